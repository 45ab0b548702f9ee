package localcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// TestRealNode: a real node comes up, runs a pod from an imported image
// with a hostPath PV from the provisioner, reports the container's
// termination message, and leaves nothing behind once stopped.
func TestRealNode(t *testing.T) {
	binDir, err := DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	missing := append(MissingBinaries(binDir), MissingRealNodeBinaries(binDir)...)
	if os.Getuid() != 0 {
		missing = append(missing, "root")
	}
	if len(missing) > 0 {
		if os.Getenv("CITA_REALNODE_REQUIRED") == "1" {
			t.Fatalf("missing %v", missing)
		}
		t.Skipf("a real node needs %v (make test-realnode)", missing)
	}
	repo := filepath.Dir(binDir)
	work := t.TempDir()
	pause := buildStatic(t, repo, "./test/images/pause", filepath.Join(work, "pause"))
	tool := buildStatic(t, repo, "./hack/image", filepath.Join(work, "image"))
	tar := filepath.Join(work, "pause.tar")
	if out, err := exec.Command(tool, "-tag", "localcluster.invalid/pause:v1", "-file", "/pause="+pause, "-entrypoint", "/pause", "-o", tar).CombinedOutput(); err != nil {
		t.Fatalf("image: %v: %s", err, out)
	}
	hostBefore := map[string]bool{}
	for _, p := range HostPaths {
		hostBefore[p] = fileExists(p)
	}

	ctx := context.Background()
	c, err := Start(ctx, Options{BinDir: binDir, WorkDir: filepath.Join(work, "cluster"), Logf: t.Logf,
		RealNode: &RealNode{SandboxImage: "localcluster.invalid/pause:v1", Images: []string{tar}}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()
	client, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		// The token controller creates it shortly after the start.
		_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		})
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "localcluster.invalid/pause:v1", ImagePullPolicy: corev1.PullNever}},
		},
	}
	if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			last += " " + cs.Name + ":" + strings.TrimSpace(cs.State.String())
		}
		return p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod not Running: %s\nkubelet log:\n%s", last, tail(filepath.Join(c.LogDir, "kubelet.log"), 40))
	}

	stopped = true
	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if left := Leftovers(c.WorkDir); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	for p, existed := range hostBefore {
		if !existed && fileExists(p) {
			t.Errorf("host path %s left behind", p)
		}
	}
}

func buildStatic(t *testing.T, repo, pkg, out string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir, cmd.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v: %s", pkg, err, b)
	}
	return out
}
