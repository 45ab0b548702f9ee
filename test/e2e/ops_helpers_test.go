package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/test/fixtures"
)

// applyYAML applies a manifest with the project's kubectl, as a user does.
func applyYAML(t *testing.T, manifest string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.bin, "kubectl"), "--kubeconfig", env.kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustApply(t *testing.T, manifest string) {
	t.Helper()
	if out, err := applyYAML(t, manifest); err != nil {
		t.Fatalf("kubectl apply: %v: %s\n%s", err, out, manifest)
	}
}

// opStatus reads any kind's common status and finalizers.
func opStatus(t *testing.T, kind, ns, name string) (*citav1.OperationStatus, metav1.Object, error) {
	t.Helper()
	return fixtures.OperationStatus(env.ctx, env.cita, kind, ns, name)
}

// waitOp waits for the operation to end: finished and its finalizer gone.
func waitOp(t *testing.T, kind, ns, name string, timeout time.Duration) *citav1.OperationStatus {
	t.Helper()
	var st *citav1.OperationStatus
	eventually(t, timeout, kind+" "+ns+"/"+name+" finished", func() (bool, string) {
		s, obj, err := opStatus(t, kind, ns, name)
		if err != nil {
			return false, err.Error()
		}
		st = s
		done := (s.Status == citav1.PhaseComplete || s.Status == citav1.PhaseFailed) && len(obj.GetFinalizers()) == 0
		return done, fmt.Sprintf("%s/%s: %s", s.Status, s.Step, s.Message)
	})
	return st
}

func jobPods(t *testing.T, ns, uid string) []corev1.Pod {
	t.Helper()
	list, err := env.kube.CoreV1().Pods(ns).List(env.ctx, metav1.ListOptions{LabelSelector: "citacloud.rivtower.com/operation-uid=" + uid})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// eventReasons lists the reasons of the events recorded on an object.
func eventReasons(t *testing.T, ns, name string) []string {
	t.Helper()
	list, err := env.kube.CoreV1().Events(ns).List(env.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Type+" "+e.Reason)
	}
	return out
}

func mustComplete(t *testing.T, st *citav1.OperationStatus) {
	t.Helper()
	if st.Status != citav1.PhaseComplete {
		t.Fatalf("status %s: %s", st.Status, st.Message)
	}
}

func notFound(err error) bool { return apierrors.IsNotFound(err) }
