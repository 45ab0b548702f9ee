//go:build linux

// Package realnode is the real-kubelet lane: the operator's and the Jobs'
// images, built as `make image` builds them, run on a real node
// (localcluster.RealNode: containerd, runc, a kubelet) with the chart
// installed by helm. Where the kwok suite (test/e2e) proves the state
// machine at scale and under injected faults, this lane proves what only
// real containers show: the images start, the chart's probes, token,
// RBAC and securityContext work, the Job's container does its data work
// with exactly the capabilities and mounts its spec grants, and a killed
// operator pod is replaced and finishes what it began.
//
// It needs root, bin/ (make tools build), bin/kubelet and Debian's
// containerd, runc and CNI plugins (hack/tools/kubelet.sh,
// hack/tools/node-runtime.sh; `make test-realnode` runs both). Without them
// it skips, unless CITA_REALNODE_REQUIRED=1 (make test).
package realnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
	"github.com/cita-cloud/cita-node-operator/test/jobrunner"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// Image names of the lane; nothing is pulled (pull policy Never or
// present).
const (
	pauseImage    = "localcluster.invalid/pause:v1"
	operatorImage = "ghcr.io/cita-cloud/cita-node-operator:realnode"
	jobImage      = "ghcr.io/cita-cloud/cita-node-operator-job:realnode"
	releaseNS     = "cita"
	release       = "cita-node-operator"
)

var env struct {
	skip       string
	ctx        context.Context
	repo, bin  string
	work       string
	cluster    *localcluster.Cluster
	kube       kubernetes.Interface
	cita       versioned.Interface
	kubeconfig string
	// hostPaths existed before the node started (Stop must leave them so).
	hostPaths map[string]bool
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.ctx = ctx
	start := time.Now()
	teardown, err := setUp(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "realnode: set-up failed: %v\n", err)
		teardown()
		return 1
	}
	if env.skip == "" {
		fmt.Fprintf(os.Stderr, "realnode: up in %s\n", time.Since(start).Round(100*time.Millisecond))
	}
	code := m.Run()
	down := time.Now()
	teardown()
	if env.cluster != nil {
		if left := leftovers(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "realnode: the node left behind: %s\n", strings.Join(left, "; "))
			code = 1
		}
		fmt.Fprintf(os.Stderr, "realnode: down in %s, nothing left behind\n", time.Since(down).Round(100*time.Millisecond))
	}
	return code
}

// leftovers is what the node left on the machine after Stop.
func leftovers() []string {
	left := localcluster.Leftovers(env.work)
	for p, existed := range env.hostPaths {
		if _, err := os.Stat(p); err == nil && !existed {
			left = append(left, "host path "+p)
		}
	}
	return left
}

func need(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

func setUp(ctx context.Context) (func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		return cleanup, err
	}
	env.repo, env.bin = repo, filepath.Join(repo, "bin")
	if v := os.Getenv("CITA_BIN_DIR"); v != "" {
		env.bin = v
	}
	missing := append(localcluster.MissingBinaries(env.bin), localcluster.MissingRealNodeBinaries(env.bin)...)
	for _, b := range []string{"cita-node-operator", "cita-node-job", "helm"} {
		if _, err := os.Stat(filepath.Join(env.bin, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "/bin/busybox")
	}
	if os.Getuid() != 0 {
		missing = append(missing, "root")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("the real-node lane needs %v (make test-realnode installs and builds them)", missing)
		if os.Getenv("CITA_REALNODE_REQUIRED") == "1" {
			return cleanup, fmt.Errorf("%s", msg)
		}
		env.skip = msg
		return cleanup, nil
	}

	if env.work, err = os.MkdirTemp("", "cita-realnode-"); err != nil {
		return cleanup, err
	}
	images, err := buildImages(ctx, filepath.Join(env.work, "images"))
	if err != nil {
		return cleanup, err
	}
	env.hostPaths = map[string]bool{}
	for _, p := range localcluster.HostPaths {
		_, err := os.Stat(p)
		env.hostPaths[p] = err == nil
	}
	cluster, err := localcluster.Start(ctx, localcluster.Options{
		BinDir:   env.bin,
		WorkDir:  filepath.Join(env.work, "cluster"),
		RealNode: &localcluster.RealNode{SandboxImage: pauseImage, Images: images},
		Logf:     func(f string, a ...any) { fmt.Fprintf(os.Stderr, "[cluster] "+f+"\n", a...) },
	})
	if err != nil {
		return cleanup, err
	}
	env.cluster = cluster
	cleanups = append(cleanups, func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "realnode: stopping the cluster: %v\n", err)
		}
		if os.Getenv("CITA_REALNODE_KEEP") == "" {
			_ = os.RemoveAll(env.work)
		}
	})
	env.kubeconfig = cluster.Kubeconfig
	cfg := cluster.RESTConfig()
	if env.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return cleanup, err
	}
	if env.cita, err = versioned.NewForConfig(cfg); err != nil {
		return cleanup, err
	}
	if err := installChart(ctx); err != nil {
		return cleanup, err
	}
	return cleanup, nil
}

// installChart installs the chart as a user would, with the images built
// here and what a cluster without a pod network needs: the operator on
// the host network, the apiserver at 127.0.0.1.
func installChart(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	repoOf := func(ref string) (string, string) { i := strings.LastIndex(ref, ":"); return ref[:i], ref[i+1:] }
	opRepo, opTag := repoOf(operatorImage)
	jobRepo, jobTag := repoOf(jobImage)
	args := []string{"install", release, filepath.Join(env.repo, "charts/cita-node-operator"),
		"--namespace", releaseNS, "--create-namespace", "--kubeconfig", env.kubeconfig, "--wait", "--timeout", "3m",
		"--set", "image.repository=" + opRepo, "--set", "image.tag=" + opTag, "--set", "image.pullPolicy=Never",
		"--set", "jobImage.repository=" + jobRepo, "--set", "jobImage.tag=" + jobTag,
		"--set", "replicaCount=1",
		"--set", "hostNetwork=true",
		"--set", "metrics.port=" + strconv.Itoa(ports[0]), "--set", "healthPort=" + strconv.Itoa(ports[1]),
		"--set", "extraEnv[0].name=KUBERNETES_SERVICE_HOST", "--set", "extraEnv[0].value=127.0.0.1",
		"--set", "extraEnv[1].name=KUBERNETES_SERVICE_PORT", "--set-string", "extraEnv[1].value=" + strconv.Itoa(env.cluster.APIServerPort),
		"--set", "startReadyTimeout=2m",
	}
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "helm"), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm install: %v: %s%s", err, out, operatorPodStory(ctx))
	}
	return nil
}

// operatorPodStory is what the operator's pods went through, for a failed
// install.
func operatorPodStory(ctx context.Context) string {
	pods, err := env.kube.CoreV1().Pods(releaseNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "\npod %s: %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "; %s ready=%v restarts=%d state=%+v last=%+v", cs.Name, cs.Ready, cs.RestartCount, cs.State, cs.LastTerminationState)
		}
		if logs, err := env.kube.CoreV1().Pods(releaseNS).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptrInt64(20)}).DoRaw(ctx); err == nil {
			fmt.Fprintf(&b, "\n%s", logs)
		}
	}
	return b.String()
}

func ptrInt64(v int64) *int64 { return &v }

// buildImages builds, with the image tool `make image` uses, the pause
// image, a stand-in for each CITA-Cloud image a node's containers name
// (the pause binary under that name: crypto and consensus are read from
// the names), the operator's image and the Jobs' image on a stand-in for
// CITA-Cloud's cloud-op image (busybox and the fake cloud-op of the
// current generation). It returns the tarballs.
func buildImages(ctx context.Context, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tool := filepath.Join(dir, "image")
	pause := filepath.Join(dir, "pause")
	for out, pkg := range map[string]string{tool: "./hack/image", pause: "./test/images/pause"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir, cmd.Env = env.repo, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v: %s", pkg, err, b)
		}
	}
	build := func(name string, args ...string) (string, error) {
		out := filepath.Join(dir, name+".tar")
		cmd := exec.CommandContext(ctx, tool, append(args, "-o", out)...)
		cmd.Dir = env.repo
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("image %s: %v: %s", name, err, b)
		}
		return out, nil
	}
	var tars []string
	add := func(name string, args ...string) error {
		tar, err := build(name, args...)
		tars = append(tars, tar)
		return err
	}
	if err := add("pause", "-tag", pauseImage, "-file", "/pause="+pause, "-entrypoint", "/pause"); err != nil {
		return nil, err
	}
	for i, img := range nodetest.DefaultImages() {
		if err := add(fmt.Sprintf("node-%d", i), "-tag", dockerName(img), "-file", "/pause="+pause, "-entrypoint", "/pause"); err != nil {
			return nil, err
		}
	}
	if err := add("operator", "-preset", "operator", "-bin", env.bin, "-tag", operatorImage); err != nil {
		return nil, err
	}
	cloudOp := filepath.Join(dir, "cloud-op")
	if err := os.WriteFile(cloudOp, []byte(jobrunner.FakeCloudOp(jobargs.CloudOpCurrent, "/tmp/cloud-op-calls")), 0o755); err != nil {
		return nil, err
	}
	baseArgs := []string{"-tag", "localcluster.invalid/cloud-op:standin", "-file", "/bin/busybox=/bin/busybox", "-file", "/usr/bin/cloud-op=" + cloudOp,
		"-env", "PATH=/usr/local/bin:/usr/bin:/bin"}
	for _, applet := range []string{"sh", "cp", "rm", "mkdir", "mv", "sleep", "cat", "ls", "printf", "echo", "chown", "ln", "find", "test", "["} {
		baseArgs = append(baseArgs, "-symlink", "/bin/"+applet+"=/bin/busybox")
	}
	base, err := build("cloud-op-standin", baseArgs...)
	if err != nil {
		return nil, err
	}
	if err := add("job", "-preset", "job", "-bin", env.bin, "-base", base, "-tag", jobImage); err != nil {
		return nil, err
	}
	return tars, nil
}

// dockerName is the name containerd stores an image under: the kubelet
// asks for docker.io/<name> when the reference has no registry.
func dockerName(ref string) string {
	if first, _, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return ref
	}
	return "docker.io/" + ref
}

func freePorts(n int) ([]int, error) { return localcluster.FreePorts(n) }

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(env.ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, why := cond()
		last = why
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s: %s", what, timeout, last)
	}
}

// operatorPod is the operator's one pod, Running and Ready.
func operatorPod(t *testing.T) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, 2*time.Minute, "the operator's pod Ready", func() (bool, string) {
		pods, err := env.kube.CoreV1().Pods(releaseNS).List(env.ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=cita-node-operator"})
		if err != nil {
			return false, err.Error()
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp == nil && podReady(p) {
				pod = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pods, none Ready", len(pods.Items))
	})
	return pod
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
