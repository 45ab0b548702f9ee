package citanode

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/nodeapitest"
)

// runningNode is a CitaNode whose API is the fake at addr, with its pod
// Running and Ready (the kubelet's part, played here).
func runningNode(t *testing.T, addr string) *fixture {
	t.Helper()
	cn := newCitaNode("test-chain-node0")
	cn.Annotations = map[string]string{AnnotationAPIAddress: addr}
	f := newFixture(t, inputs("test-chain-node0"), cn)
	f.sync("test-chain-node0")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "test-chain-node0-0", Namespace: ns, Labels: map[string]string{LabelChainNode: "test-chain-node0"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "controller", Image: "docker.io/citacloud/controller_hsm:v6.7.4"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	if _, err := f.kube.CoreV1().Pods(ns).Create(f.ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	return f
}

// TestStatusFromTheNodesAPI: a running node's height, peers and sync state
// come from its API; a height change alone is written at most once a
// minute, a change of sync state at once; between two polls an event's
// sync does not ask the node again.
func TestStatusFromTheNodesAPI(t *testing.T) {
	addr, srv := nodeapitest.Start(t)
	srv.SetHeight(100)
	srv.SetPeers(3)
	srv.SetSynced(true)
	f := runningNode(t, addr)
	f.sync("test-chain-node0")
	n := f.node("test-chain-node0")
	if n.Status.Status != citav1.NodePhaseRunning || n.Status.BlockHeight != 100 || n.Status.PeerCount != 3 || !ptr.Deref(n.Status.Synced, false) || n.Status.LastAnswerTime == nil {
		t.Fatalf("status %+v", n.Status)
	}
	if c := condition(n, citav1.NodeConditionSynced); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Synced %+v", c)
	}

	calls := srv.Calls(nodeapitest.GetNodeStatus)
	f.sync("test-chain-node0")
	if got := srv.Calls(nodeapitest.GetNodeStatus); got != calls {
		t.Fatalf("a sync between two polls asked the node again (%d calls, was %d)", got, calls)
	}

	srv.SetHeight(101)
	f.clock.Step(31 * time.Second)
	f.clear()
	f.sync("test-chain-node0")
	if w := f.writes(); len(w) != 0 || f.node("test-chain-node0").Status.BlockHeight != 100 {
		t.Fatalf("a height change 31 s after the last write was written: %v", w)
	}
	srv.SetHeight(102)
	f.clock.Step(31 * time.Second)
	f.sync("test-chain-node0")
	if h := f.node("test-chain-node0").Status.BlockHeight; h != 102 {
		t.Fatalf("height %d a minute later, want 102", h)
	}

	srv.SetSynced(false)
	f.clock.Step(31 * time.Second)
	f.sync("test-chain-node0")
	if c := condition(f.node("test-chain-node0"), citav1.NodeConditionSynced); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("Synced after the node said it syncs: %+v", c)
	}
}

// TestStalledChain: a Ready node whose height stays put for the stall
// window is Progressing=False, with one Warning event.
func TestStalledChain(t *testing.T) {
	addr, srv := nodeapitest.Start(t)
	srv.SetHeight(500)
	srv.SetSynced(true)
	f := runningNode(t, addr)
	for range 11 { // 5.5 minutes of polls at 30 s
		f.sync("test-chain-node0")
		f.clock.Step(31 * time.Second)
	}
	c := condition(f.node("test-chain-node0"), citav1.NodeConditionProgressing)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonHeightStalled || !strings.Contains(c.Message, "500") {
		t.Fatalf("Progressing %+v", c)
	}
	// Stalled, more polls write nothing more.
	f.clear()
	f.sync("test-chain-node0")
	f.clock.Step(31 * time.Second)
	f.sync("test-chain-node0")
	if w := f.writes(); len(w) != 0 {
		t.Fatalf("polls of a stalled node wrote %v", w)
	}
	stalled := 0
	for len(f.recorder.Events) > 0 {
		if ev := <-f.recorder.Events; strings.HasPrefix(ev, "Warning HeightStalled") {
			stalled++
		}
	}
	if stalled != 1 {
		t.Fatalf("%d HeightStalled events, want 1", stalled)
	}
	srv.SetHeight(501)
	f.clock.Step(31 * time.Second)
	f.sync("test-chain-node0")
	if c := condition(f.node("test-chain-node0"), citav1.NodeConditionProgressing); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Progressing after the height grew: %+v", c)
	}
}

// TestNodeAPIDown: no answer leaves the last figures and says so.
func TestNodeAPIDown(t *testing.T) {
	addr, srv := nodeapitest.Start(t)
	srv.Fail(errDown)
	f := runningNode(t, addr)
	f.sync("test-chain-node0")
	c := condition(f.node("test-chain-node0"), citav1.NodeConditionSynced)
	if c == nil || c.Status != metav1.ConditionUnknown || c.Reason != ReasonNoAnswer || !strings.Contains(c.Message, addr) {
		t.Fatalf("Synced %+v", c)
	}
}

var errDown = status.Error(codes.Unavailable, "node down")
