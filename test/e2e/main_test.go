package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned"
	"github.com/cita-cloud/cita-node-operator/test/fixtures"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// env is the one control plane and operator the suite shares; each test
// works in namespaces of its own.
var env struct {
	skip       string
	ctx        context.Context
	repo       string
	bin        string
	cluster    *localcluster.Cluster
	kube       kubernetes.Interface
	cita       versioned.Interface
	operator   *operator
	logDir     string
	kubeconfig string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.ctx = ctx
	cleanup, err := setUp(ctx)
	defer cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e logs (operator, control plane): %s\n", env.logDir)
	} else if env.logDir != "" {
		os.RemoveAll(env.logDir)
	}
	return code
}

// need skips a test when the environment could not be built and the suite
// is not required (CITA_E2E_REQUIRED unset): a developer without bin/ can
// still run go test ./... .
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
	env.repo = repo
	env.bin = filepath.Join(repo, "bin")
	if v := os.Getenv("CITA_BIN_DIR"); v != "" {
		env.bin = v
	}
	missing := localcluster.MissingBinaries(env.bin)
	for _, b := range []string{"cita-node-operator", "cita-node-job"} {
		if _, err := os.Stat(filepath.Join(env.bin, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("missing in %s: %v (run make tools build)", env.bin, missing)
		if os.Getenv("CITA_E2E_REQUIRED") == "1" {
			return cleanup, fmt.Errorf("%s", msg)
		}
		env.skip = msg
		return cleanup, nil
	}

	env.logDir, err = os.MkdirTemp("", "cita-e2e-logs-")
	if err != nil {
		return cleanup, err
	}
	cluster, err := localcluster.Start(ctx, localcluster.Options{
		BinDir:             env.bin,
		Nodes:              2,
		LeavePodsWithLabel: localcluster.JobPodLabel,
		Logf:               func(f string, a ...any) { fmt.Fprintf(os.Stderr, "[cluster] "+f+"\n", a...) },
	})
	if err != nil {
		return cleanup, err
	}
	cleanups = append(cleanups, func() { _ = cluster.Stop() })
	env.cluster = cluster
	env.kubeconfig = cluster.Kubeconfig
	cfg := cluster.RESTConfig()
	if env.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return cleanup, err
	}
	if env.cita, err = versioned.NewForConfig(cfg); err != nil {
		return cleanup, err
	}

	// The CRDs come from the chart, as helm installs them.
	if out, err := kubectl("apply", "--server-side", "-f", filepath.Join(repo, "charts/cita-node-operator/crds")); err != nil {
		return cleanup, fmt.Errorf("installing CRDs: %v: %s", err, out)
	}
	if out, err := kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return cleanup, fmt.Errorf("CRDs not established: %v: %s", err, out)
	}
	// The samples' storage class, served by the cluster's provisioner.
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "nas-client-provisioner"}, Provisioner: localcluster.ProvisionerName}
	if _, err := env.kube.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return cleanup, err
	}

	// The chart installs the operator's ServiceAccount and RBAC (the
	// Deployment at 0 replicas: no image runs here); the operator process
	// then authenticates as that ServiceAccount, so every scenario proves
	// the chart's least-privilege RBAC sufficient.
	helm := exec.Command(filepath.Join(env.bin, "helm"), "install", "cita-node-operator", filepath.Join(repo, "charts/cita-node-operator"),
		"--namespace", "cita", "--create-namespace", "--set", "replicaCount=0", "--kubeconfig", env.kubeconfig)
	if out, err := helm.CombinedOutput(); err != nil {
		return cleanup, fmt.Errorf("helm install: %v: %s", err, out)
	}
	// Scenarios create operations at once: wait until the chart's finalizer
	// policy works rather than race its 503s.
	if _, err := fixtures.WaitFinalizerPolicy(ctx, env.cita, "default", true, time.Minute); err != nil {
		return cleanup, err
	}
	operatorKubeconfig := filepath.Join(env.logDir, "operator.kubeconfig")
	if err := localcluster.ImpersonatingKubeconfig(env.kubeconfig, operatorKubeconfig, "cita", "cita-node-operator"); err != nil {
		return cleanup, err
	}

	stopRunner, err := startRunner(ctx)
	if err != nil {
		return cleanup, err
	}
	cleanups = append(cleanups, stopRunner)

	env.operator = &operator{bin: filepath.Join(env.bin, "cita-node-operator"), kubeconfig: operatorKubeconfig, logDir: env.logDir}
	if err := env.operator.start(); err != nil {
		return cleanup, err
	}
	cleanups = append(cleanups, func() { _ = env.operator.stop() })
	return cleanup, nil
}

// kubectl runs the project's own kubectl against the cluster.
func kubectl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(env.bin, "kubectl"), append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// namespace creates a namespace for one test, deleted at its end.
func namespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := env.kube.CoreV1().Namespaces().Create(env.ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return name
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
}

func trim(s string) string { return strings.TrimSpace(s) }
