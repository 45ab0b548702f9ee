package operations

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	core "k8s.io/client-go/testing"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

func switchover(name, src, dst string) *citav1.Switchover {
	return &citav1.Switchover{ObjectMeta: meta0(name), Spec: citav1.SwitchoverSpec{Chain: "test-chain", SourceNode: src, DestNode: dst, JobOptions: jobDefaults()}}
}

func stsAccount(sts *appsv1.StatefulSet) string {
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == nodeops.AccountVolume {
			return v.ConfigMap.Name
		}
	}
	return ""
}

func twoNodes() []runtime.Object {
	return append(nodetest.CloudConfigNode("test-chain", "node0", inCluster), nodetest.CloudConfigNode("test-chain", "node1", inCluster, nodetest.Replicas(2))...)
}

// playKubelet removes the pods of stopped StatefulSets.
func playKubelet(f *fixture, names ...string) {
	for _, n := range names {
		if *f.statefulSet(n).Spec.Replicas == 0 {
			f.deletePodsOf("StatefulSet/" + n)
		}
	}
}

func TestSwitchover(t *testing.T) {
	cr := switchover("sw", "node0", "node1")
	f := newFixture(t, append([]runtime.Object{cr}, twoNodes()...)...)
	step := func(want ...string) {
		t.Helper()
		f.clearWrites()
		f.mustSync("Switchover", "sw")
		if got := f.writes(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("writes\n got %q\nwant %q", got, want)
		}
	}
	step("patch switchovers sw")
	step("patch statefulsets node0", "patch statefulsets node1", "update switchovers/status sw") // lock both
	if *f.statefulSet("node0").Spec.Replicas != 1 {
		t.Fatal("node0 stopped before both nodes were locked")
	}
	if c := meta.FindStatusCondition(f.status(cr).Conditions, citav1.ConditionNodeLocked); c == nil || c.Message != "holds StatefulSet/node0, StatefulSet/node1" {
		t.Fatalf("NodeLocked after the locks: %+v", c)
	}
	step("patch statefulsets node0", "patch statefulsets node1", "update switchovers/status sw") // stop both
	if c := meta.FindStatusCondition(f.status(cr).Conditions, citav1.ConditionNodeStopped); c == nil || !strings.Contains(c.Message, "node0, node1") {
		t.Fatalf("NodeStopped after the stops: %+v", c)
	}
	step() // pods still there
	playKubelet(f, "node0", "node1")
	step("patch statefulsets node0", "patch statefulsets node1", "update switchovers/status sw") // swap
	if a, b := stsAccount(f.statefulSet("node0")), stsAccount(f.statefulSet("node1")); a != "node1-account" || b != "node0-account" {
		t.Fatalf("accounts after the swap: node0=%s node1=%s", a, b)
	}
	step("update switchovers/status sw")                                                         // done: outcome recorded
	step("patch statefulsets node0", "patch statefulsets node1", "update switchovers/status sw") // started
	step("update switchovers/status sw")                                                         // both Ready
	step("patch switchovers sw")
	if st := f.status(cr); st.Status != citav1.PhaseComplete {
		t.Fatalf("%s: %s", st.Status, st.Message)
	}
	if *f.statefulSet("node0").Spec.Replicas != 1 || *f.statefulSet("node1").Spec.Replicas != 2 {
		t.Fatal("nodes not started with their own replicas")
	}
	if a, b := stsAccount(f.statefulSet("node0")), stsAccount(f.statefulSet("node1")); a != "node1-account" || b != "node0-account" {
		t.Fatalf("accounts at the end: node0=%s node1=%s", a, b)
	}
	if jobs, _ := f.kube.Tracker().List(jobsGVR, jobsGVK, ns); len(mustItems(t, jobs)) != 0 {
		t.Fatal("a Switchover created a Job")
	}
}

// TestSwitchoverSwapsExactlyOnce: restarted after every sync (and with the
// swap's status write lost), the accounts end swapped once, never swapped
// back.
func TestSwitchoverSwapsExactlyOnce(t *testing.T) {
	for k := 0; k <= 10; k++ {
		t.Run(fmt.Sprintf("restart-after-%d", k), func(t *testing.T) {
			cr := switchover("sw", "node0", "node1")
			f := newFixture(t, append([]runtime.Object{cr}, twoNodes()...)...)
			for range k {
				_ = f.sync("Switchover", "sw")
				playKubelet(f, "node0", "node1")
			}
			f.start()
			for range 20 {
				_ = f.sync("Switchover", "sw")
				playKubelet(f, "node0", "node1")
				if st := f.status(cr); ended(st) && len(f.cr(cr).GetFinalizers()) == 0 {
					break
				}
			}
			if st := f.status(cr); st.Status != citav1.PhaseComplete {
				t.Fatalf("%s: %s", st.Status, st.Message)
			}
			if a, b := stsAccount(f.statefulSet("node0")), stsAccount(f.statefulSet("node1")); a != "node1-account" || b != "node0-account" {
				t.Fatalf("accounts: node0=%s node1=%s", a, b)
			}
			if *f.statefulSet("node0").Spec.Replicas != 1 || *f.statefulSet("node1").Spec.Replicas != 2 {
				t.Fatal("replicas not restored")
			}
		})
	}
}

// TestSwitchoverAgainstAnOperationOnOneOfItsNodes: neither deadlocks; they
// run one after the other.
func TestSwitchoverAgainstAnOperationOnOneOfItsNodes(t *testing.T) {
	d := deployed{method: citav1.DeployMethodCloudConfig, chain: "test-chain", node: "node1", pod: "node1-0", workload: "statefulsets node1", replicas: 2}
	fb := fallbackNamed("fb", d, t0)
	sw := switchover("sw", "node0", "node1")
	sw.CreationTimestamp.Time = t0.Add(time.Second)
	f := newFixture(t, append([]runtime.Object{fb, sw}, twoNodes()...)...)
	for range 40 {
		_ = f.sync("Switchover", "sw")
		_ = f.sync("BlockHeightFallback", "fb")
		playKubelet(f, "node0", "node1")
		world(f, d, "uid-fb", "fb-fallback")
		if ended(f.status(sw)) && ended(f.status(fb)) {
			break
		}
	}
	for _, cr := range []object{fb, sw} {
		if st := f.status(cr); st.Status != citav1.PhaseComplete {
			t.Fatalf("%s: %s %s", cr.GetName(), st.Status, st.Message)
		}
	}
}

// TestSwitchoversInOppositeOrderDoNotDeadlock: A swaps (node0,node1), B
// swaps (node1,node0); both lock in key order, so one waits for the other.
func TestSwitchoversInOppositeOrderDoNotDeadlock(t *testing.T) {
	a := switchover("a", "node0", "node1")
	b := switchover("b", "node1", "node0")
	b.CreationTimestamp.Time = t0.Add(time.Second)
	f := newFixture(t, append([]runtime.Object{a, b}, twoNodes()...)...)
	for range 60 {
		_ = f.sync("Switchover", "b")
		_ = f.sync("Switchover", "a")
		playKubelet(f, "node0", "node1")
		if ended(f.status(a)) && ended(f.status(b)) {
			break
		}
	}
	for _, cr := range []object{a, b} {
		if st := f.status(cr); st.Status != citav1.PhaseComplete {
			t.Fatalf("%s: %s %s", cr.GetName(), st.Status, st.Message)
		}
	}
	// Swapped twice: back where they started.
	if x, y := stsAccount(f.statefulSet("node0")), stsAccount(f.statefulSet("node1")); x != "node0-account" || y != "node1-account" {
		t.Fatalf("accounts: node0=%s node1=%s", x, y)
	}
}

func mustItems(t *testing.T, list runtime.Object) []runtime.Object {
	t.Helper()
	items, err := metaExtract(list)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// Two Switchovers of one pair, the later-sorted one holding a node when the
// other appears first in line: neither waits for the other forever.
func TestSwitchoversOfOnePairDoNotDeadlock(t *testing.T) {
	z := switchover("z", "node0", "node1")
	f := newFixture(t, append([]runtime.Object{z}, twoNodes()...)...)
	f.mustSync("Switchover", "z")          // finalizer
	f.mustSync("Switchover", "z")          // holds node0
	a := switchover("a", "node1", "node0") // same second, a name that sorts first
	f.upsert(a)
	for range 40 {
		_ = f.sync("Switchover", "a")
		_ = f.sync("Switchover", "z")
		playKubelet(f, "node0", "node1")
		f.clock.Step(time.Second)
	}
	for _, cr := range []object{a, z} {
		if st := f.status(cr); st.Status != citav1.PhaseComplete {
			t.Fatalf("%s: %s %s", cr.GetName(), st.Status, st.Message)
		}
	}
}

// A Switchover interrupted between its two patches and then deleted gives
// each node its own account back before starting them: never one account
// on two running nodes.
func TestHalfDoneSwitchoverIsReverted(t *testing.T) {
	cr := switchover("sw", "node0", "node1")
	f := newFixture(t, append([]runtime.Object{cr}, twoNodes()...)...)
	for range 6 {
		f.mustSync("Switchover", "sw")
	}
	playKubelet(f, "node0", "node1")
	broken := true
	f.kube.PrependReactor("patch", "statefulsets", func(a core.Action) (bool, runtime.Object, error) {
		p := a.(core.PatchAction)
		if broken && p.GetName() == "node1" && strings.Contains(string(p.GetPatchType()), "strategic") {
			return true, nil, apierrors.NewInternalError(errors.New("etcd timeout"))
		}
		return false, nil, nil
	})
	_ = f.sync("Switchover", "sw")
	if stsAccount(f.statefulSet("node0")) != "node1-account" || stsAccount(f.statefulSet("node1")) != "node1-account" {
		t.Fatal("the scenario needs node0 swapped and node1 not")
	}
	broken = false
	f.deleteCR(cr)
	for range 10 {
		_ = f.sync("Switchover", "sw")
	}
	if a0, a1 := stsAccount(f.statefulSet("node0")), stsAccount(f.statefulSet("node1")); a0 != "node0-account" || a1 != "node1-account" {
		t.Fatalf("accounts after the failed Switchover: node0=%s node1=%s", a0, a1)
	}
	if *f.statefulSet("node0").Spec.Replicas != 1 || *f.statefulSet("node1").Spec.Replicas != 2 {
		t.Fatal("nodes not started")
	}
}
