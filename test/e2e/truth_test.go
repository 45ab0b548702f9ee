package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/test/jobrunner"
)

// TestFallbackNotBelowTheNode: the fake cloud-op behaves as v6.7.4 does
// for a height not below the node's ("ignore rollback", exit 0): at the
// node's height the fallback is Complete saying nothing was rolled back,
// with status.heightBefore, and the node seen Ready; above it, Failed with
// both heights. The node is started both times and nothing is rolled back.
func TestFallbackNotBelowTheNode(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-tip")
	n := deployCloudConfig(t, ns, "tip", "tip-node0")

	mustApply(t, fallbackYAML(ns, "at-tip", n, jobrunner.TipHeight, ""))
	st := waitOp(t, "BlockHeightFallback", ns, "at-tip", opTimeout)
	mustComplete(t, st)
	if !strings.Contains(st.Message, "the node was already at height 500000000, nothing was rolled back") {
		t.Errorf("message %q", st.Message)
	}
	if c := meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("NodeReady %+v on a Complete operation", c)
	}
	fb, err := env.cita.CitacloudV1().BlockHeightFallbacks(ns).Get(env.ctx, "at-tip", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fb.Status.HeightBefore == nil || *fb.Status.HeightBefore != jobrunner.TipHeight {
		t.Errorf("status.heightBefore %v", fb.Status.HeightBefore)
	}

	mustApply(t, fallbackYAML(ns, "above-tip", n, jobrunner.TipHeight+1, ""))
	st = waitOp(t, "BlockHeightFallback", ns, "above-tip", opTimeout)
	if st.Status != citav1.PhaseFailed || !strings.Contains(st.Message, "the node is at height 500000000, below the fallback's height 500000001: nothing was rolled back") {
		t.Fatalf("above the node: %s %q", st.Status, st.Message)
	}
	if r := n.specReplicas(t); r != 1 {
		t.Fatalf("node at %d replicas", r)
	}
	if _, err := os.Stat(filepath.Join(n.root(t), "chain_data", jobrunner.FallbackMarker)); err == nil {
		t.Error("the fake cloud-op rolled the node back")
	}
}

// TestStartedNodeNeverReady: a node whose pod cannot run (its template asks
// for a machine the cluster does not have: Pending, Unschedulable, as real
// as the scheduler makes it) is stopped, its fallback succeeds, it is
// started, and the operation fails NodeNotReady once --start-ready-timeout
// (20s here) has passed, naming the pod and why; the node left started.
func TestStartedNodeNeverReady(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-notready")
	n := deployCloudConfig(t, ns, "nr", "nr-node0")
	patch := `{"spec":{"template":{"spec":{"nodeSelector":{"e2e.cita/machine":"none"}}}}}`
	if _, err := env.kube.AppsV1().StatefulSets(ns).Patch(env.ctx, n.workload, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the node's pod unschedulable", func() (bool, string) {
		for _, p := range n.pods(t) {
			if p.Spec.NodeName == "" && p.Status.Phase == corev1.PodPending && p.DeletionTimestamp == nil {
				return true, ""
			}
		}
		return false, "no pending pod yet"
	})
	start := time.Now()
	mustApply(t, fallbackYAML(ns, "fb", n, 10, ""))
	st := waitOp(t, "BlockHeightFallback", ns, "fb", opTimeout)
	took := time.Since(start)
	if st.Status != citav1.PhaseFailed {
		t.Fatalf("status %s: %q", st.Status, st.Message)
	}
	for _, want := range []string{"Job fb-fallback succeeded", "the node did not become Ready within 20s", "StatefulSet/nr-node0 has 0 of 1 pods Ready", "pod nr-node0-0 is Pending: Unschedulable"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("message %q does not say %q", st.Message, want)
		}
	}
	if c := meta.FindStatusCondition(st.Conditions, citav1.ConditionSucceeded); c == nil || c.Reason != "NodeNotReady" {
		t.Errorf("Succeeded %+v", c)
	}
	if took < 20*time.Second || took > 90*time.Second {
		t.Errorf("failed after %s, want the 20s timeout plus the operation", took)
	}
	if r := n.specReplicas(t); r != 1 {
		t.Fatalf("node at %d replicas, want it left started", r)
	}
	if a := lockAnnotations(n.annotations(t)); len(a) != 0 {
		t.Errorf("lock left: %v", a)
	}
	if reasons := strings.Join(eventReasons(t, ns, "fb"), ","); !strings.Contains(reasons, "Warning NodeNotReady") {
		t.Errorf("no Warning NodeNotReady event: %s", reasons)
	}
}
