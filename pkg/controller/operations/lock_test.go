package operations

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

func fallbackNamed(name string, d deployed, created time.Time) *citav1.BlockHeightFallback {
	cr := fallbackOn(d)
	cr.ObjectMeta = meta0(name)
	cr.CreationTimestamp = metav1.NewTime(created)
	return cr
}

func backupNamed(name string, d deployed, created time.Time) *citav1.Backup {
	cr := &citav1.Backup{ObjectMeta: meta0(name), Spec: citav1.BackupSpec{NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults()}}
	cr.CreationTimestamp = metav1.NewTime(created)
	return cr
}

func lockCondition(f *fixture, cr object) *metav1.Condition {
	return meta.FindStatusCondition(f.status(cr).Conditions, citav1.ConditionNodeLocked)
}

// driveAll syncs every listed operation in turn, playing the cluster, until
// all are finished. It records which operation held the workload at each
// round and fails if two ever ran at once.
func driveAll(t *testing.T, f *fixture, d deployed, ops map[string]object, kinds map[string]string) []string {
	t.Helper()
	var order []string
	for range 60 {
		done := true
		for name, cr := range ops {
			_ = f.sync(kinds[name], name)
			uid := string(cr.GetUID())
			suffix := map[string]string{"BlockHeightFallback": "fallback", "Backup": "backup", "ChangeOwner": "chown"}[kinds[name]]
			world(f, d, uid, name+"-"+suffix)
			if st := f.status(cr); !ended(st) || len(f.cr(cr).GetFinalizers()) > 0 {
				done = false
			}
		}
		w := workloadOf(f, d)
		if h, held := nodeops.HolderOf(w); held && (len(order) == 0 || order[len(order)-1] != h.Name) {
			order = append(order, h.Name)
		}
		running := 0
		for name := range ops {
			if f.jobExists(name+"-fallback") || f.jobExists(name+"-backup") {
				if j := f.c.jobPods(string(ops[name].GetUID())); len(j) > 0 && !jobDone(f, name) {
					running++
				}
			}
		}
		if running > 1 {
			t.Fatal("two operations ran on one node at once")
		}
		if done {
			return order
		}
	}
	for name, cr := range ops {
		st := f.status(cr)
		t.Logf("%s: %s/%s %s %+v", name, st.Status, st.Step, st.Message, st.Conditions)
	}
	t.Fatal("operations did not all finish")
	return nil
}

func jobDone(f *fixture, name string) bool {
	for _, suffix := range []string{"fallback", "backup"} {
		if f.jobExists(name+"-"+suffix) && jobFinished(f.job(name+"-"+suffix)) {
			return true
		}
	}
	return false
}

func workloadOf(f *fixture, d deployed) *nodeops.Workload {
	kind, name, _ := strings.Cut(d.workload, " ")
	if kind == "deployments" {
		return nodeops.DeploymentWorkload(f.deployment(name))
	}
	return nodeops.StatefulSetWorkload(f.statefulSet(name))
}

// TestTwoOperationsOnOneNodeRunOneAfterTheOther: the second waits, Active,
// with a condition naming the holder and its place, then runs; the node ends
// at its original replicas (the second did not record the first's 0).
func TestTwoOperationsOnOneNodeRunOneAfterTheOther(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			first := backupNamed("first", d, t0)
			second := fallbackNamed("second", d, t0.Add(time.Second))
			f := newFixture(t, append([]runtime.Object{first, second}, d.objects...)...)
			f.mustSync("Backup", "first")
			f.mustSync("Backup", "first") // holds and stops
			f.mustSync("BlockHeightFallback", "second")
			f.mustSync("BlockHeightFallback", "second")
			st := f.status(second)
			cond := lockCondition(f, second)
			if st.Status != citav1.PhaseActive || st.Step != citav1.StepWaiting || cond == nil || cond.Status != metav1.ConditionFalse {
				t.Fatalf("second: %s/%s, condition %+v", st.Status, st.Step, cond)
			}
			if !strings.Contains(cond.Message, "held by Backup/first") || !strings.Contains(cond.Message, "position 1") {
				t.Fatalf("waiting message %q does not name the holder and position", cond.Message)
			}
			order := driveAll(t, f, d, map[string]object{"first": first, "second": second}, map[string]string{"first": "Backup", "second": "BlockHeightFallback"})
			if strings.Join(order, ",") != "first,second" {
				t.Fatalf("holders in order %v, want first,second", order)
			}
			assertStartedWith(t, f, d, d.replicas)
			for _, cr := range []object{first, second} {
				if st := f.status(cr); st.Status != citav1.PhaseComplete {
					t.Fatalf("%s: %s %s", cr.GetName(), st.Status, st.Message)
				}
			}
		})
	}
}

// TestHelmNodesOfOneChainAreSerialized: two nodes of one helm chain share
// the StatefulSet that stop and start scale, so their operations queue.
func TestHelmNodesOfOneChainAreSerialized(t *testing.T) {
	d := deployments()[1]
	other := d
	other.node, other.pod = "helm-chain-2", "helm-chain-2"
	a := fallbackNamed("a", d, t0)
	b := fallbackNamed("b", other, t0.Add(time.Second))
	f := newFixture(t, append([]runtime.Object{a, b}, d.objects...)...)
	f.mustSync("BlockHeightFallback", "a")
	f.mustSync("BlockHeightFallback", "a")
	f.mustSync("BlockHeightFallback", "b")
	f.mustSync("BlockHeightFallback", "b")
	if st := f.status(b); st.Step != citav1.StepWaiting {
		t.Fatalf("b on the same helm chain is %s, want Waiting", st.Step)
	}
	order := driveAll(t, f, d, map[string]object{"a": a, "b": b}, map[string]string{"a": "BlockHeightFallback", "b": "BlockHeightFallback"})
	if strings.Join(order, ",") != "a,b" {
		t.Fatalf("order %v", order)
	}
	assertStartedWith(t, f, d, 3)
}

// TestFairLock: waiting operations get the node in creation order, then by
// name, whatever order they are synced in.
func TestFairLock(t *testing.T) {
	d := deployments()[0]
	holder := fallbackNamed("holder", d, t0)
	late := fallbackNamed("a-late", d, t0.Add(2*time.Second))
	early := fallbackNamed("z-early", d, t0.Add(time.Second))
	tieB := fallbackNamed("tie-b", d, t0.Add(3*time.Second))
	tieA := fallbackNamed("tie-a", d, t0.Add(3*time.Second))
	f := newFixture(t, append([]runtime.Object{holder, late, early, tieB, tieA}, d.objects...)...)
	for _, n := range []string{"holder", "holder", "tie-b", "tie-b", "a-late", "a-late", "tie-a", "tie-a", "z-early", "z-early"} {
		f.mustSync("BlockHeightFallback", n)
	}
	wantPos := map[object]string{early: "position 1", late: "position 2", tieA: "position 3", tieB: "position 4"}
	for cr, pos := range wantPos {
		if c := lockCondition(f, cr); c == nil || !strings.Contains(c.Message, pos) {
			t.Errorf("%s: condition %+v, want %s", cr.GetName(), c, pos)
		}
	}
	ops := map[string]object{"holder": holder, "a-late": late, "z-early": early, "tie-b": tieB, "tie-a": tieA}
	kinds := map[string]string{}
	for n := range ops {
		kinds[n] = "BlockHeightFallback"
	}
	order := driveAll(t, f, d, ops, kinds)
	if got := strings.Join(order, ","); got != "holder,z-early,a-late,tie-a,tie-b" {
		t.Fatalf("order %s", got)
	}
	assertStartedWith(t, f, d, 1)
}

// forceAway plays a user removing an operation's finalizer by hand, then
// the CR disappearing.
func forceAway(f *fixture, cr object) {
	cur := f.cr(cr)
	cur.SetFinalizers(nil)
	f.upsert(cur)
	f.deleteCR(cr)
}

// stoppedThenOrphaned: a BlockHeightFallback that stopped its node, then
// was forced away.
func stoppedThenOrphaned(t *testing.T) (*fixture, deployed, *citav1.BlockHeightFallback) {
	d := deployments()[0]
	gone := fallbackNamed("gone", d, t0)
	f := newFixture(t, append([]runtime.Object{gone}, d.objects...)...)
	f.mustSync("BlockHeightFallback", "gone")
	f.mustSync("BlockHeightFallback", "gone")
	forceAway(f, gone)
	return f, d, gone
}

// orphanRecoveryJob is the name of the recovery Job of an orphaned
// operation (see recoverOrphan).
func orphanRecoveryJob(name, uid string) string {
	return nodeops.JobName(name, "recover-"+uid[:min(8, len(uid))])
}

// TestOrphanedLockIsReleased: a workload still locked and stopped by an
// operation that no longer exists (its finalizer was forced off) is started
// and released, after the orphan's Job pods are gone and a recovery Job
// (owned by the workload) has put back what the killed Job may have left.
func TestOrphanedLockIsReleased(t *testing.T) {
	for i, recovered := range []bool{true, false, true} {
		d := deployments()[i]
		t.Run(fmt.Sprintf("%s, recovery succeeds %v", d.method, recovered), func(t *testing.T) {
			gone := fallbackNamed("gone", d, t0)
			f := newFixture(t, append([]runtime.Object{gone}, d.objects...)...)
			f.mustSync("BlockHeightFallback", "gone")
			f.mustSync("BlockHeightFallback", "gone")
			f.deletePod(d.pod)
			f.mustSync("BlockHeightFallback", "gone")
			f.runningJobPod("gone-fallback", nil)
			// Someone removes the finalizer by hand and the CR disappears.
			forceAway(f, gone)

			if err := f.sync("BlockHeightFallback", "gone"); err == nil {
				t.Fatal("released a workload while the orphan's Job pod runs")
			}
			if workloadReplicas(f, d) != 0 {
				t.Fatal("node started while the orphan's Job pod runs")
			}
			f.deletePod("gone-fallback-pod") // killed mid-run
			if d.method == citav1.DeployMethodHelm {
				f.deletePod("helm-chain-0")
				f.deletePod("helm-chain-2")
			}
			f.mustSync("BlockHeightFallback", "gone")
			rec := orphanRecoveryJob("gone", string(gone.UID))
			if !f.jobExists(rec) {
				t.Fatalf("no recovery Job %s before starting the orphaned node", rec)
			}
			job := f.job(rec)
			w := workloadOf(f, d)
			if ref := job.OwnerReferences; len(ref) != 1 || ref[0].Kind != w.Kind || ref[0].APIVersion != "apps/v1" || ref[0].UID != w.Object.GetUID() || metav1.GetControllerOf(job) != nil {
				t.Fatalf("recovery Job owners %+v, want the %s, not as controller", ref, w.Kind)
			}
			if claim := job.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim; claim == nil || claim.ClaimName != d.claim {
				t.Fatalf("recovery Job volume %+v, want the node's claim %s", job.Spec.Template.Spec.Volumes[0], d.claim)
			}
			if args := job.Spec.Template.Spec.Containers[0].Command; !strings.Contains(strings.Join(args, " "), string(jobargs.OpRecover)) {
				t.Fatalf("recovery Job args %v", args)
			}
			f.mustSync("BlockHeightFallback", "gone")
			if workloadReplicas(f, d) != 0 {
				t.Fatal("node started while its recovery Job runs")
			}
			f.finishJob(rec, recovered, &jobargs.Result{Op: jobargs.OpRecover})
			f.mustSync("BlockHeightFallback", "gone")
			assertStartedWith(t, f, d, d.replicas)
			want := "Normal NodeRootChecked"
			if !recovered {
				want = "Warning RecoveryFailed"
			}
			if events := strings.Join(f.events(), "\n"); !strings.Contains(events, "Normal RecoveryJobCreated") || !strings.Contains(events, want) {
				t.Fatalf("events %s, want RecoveryJobCreated and %s", events, want)
			}
		})
	}
}

// TestOrphanRecoveryThatCannotStart: a recovery Job whose pod never starts
// does not keep the orphaned node down past the Job start timeout.
func TestOrphanRecoveryThatCannotStart(t *testing.T) {
	f, d, gone := stoppedThenOrphaned(t)
	f.mustSync("BlockHeightFallback", "gone")
	rec := orphanRecoveryJob("gone", string(gone.UID))
	if !f.jobExists(rec) {
		t.Fatal("no recovery Job")
	}
	f.runningJobPod(rec, &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "registry down"})
	f.mustSync("BlockHeightFallback", "gone")
	if workloadReplicas(f, d) != 0 {
		t.Fatal("node started before the recovery Job had its chance")
	}
	f.clock.Step(DefaultConfig().JobStartTimeout)
	f.mustSync("BlockHeightFallback", "gone")
	f.deletePod(rec + "-pod") // the garbage collector, after the Job's deletion
	f.mustSync("BlockHeightFallback", "gone")
	assertStartedWith(t, f, d, 1)
}

// TestOrphanOfAKindThatKeepsTheNodeRoot: an orphaned ChangeOwner (its Job
// does not rewrite databases) is released without a recovery Job.
func TestOrphanOfAKindThatKeepsTheNodeRoot(t *testing.T) {
	d := deployments()[0]
	co := &citav1.ChangeOwner{ObjectMeta: meta0("co"), Spec: citav1.ChangeOwnerSpec{NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults()}}
	f := newFixture(t, append([]runtime.Object{co}, d.objects...)...)
	f.mustSync("ChangeOwner", "co")
	f.mustSync("ChangeOwner", "co")
	forceAway(f, co)
	f.mustSync("ChangeOwner", "co")
	if f.jobExists(orphanRecoveryJob("co", string(co.UID))) {
		t.Fatal("a recovery Job for a ChangeOwner")
	}
	assertStartedWith(t, f, d, 1)
}

// A newcomer on a node released from an orphan gets it.
func TestNewcomerAfterOrphan(t *testing.T) {
	f, d, gone := stoppedThenOrphaned(t)
	f.mustSync("BlockHeightFallback", "gone")
	f.finishJob(orphanRecoveryJob("gone", string(gone.UID)), true, &jobargs.Result{Op: jobargs.OpRecover})
	f.mustSync("BlockHeightFallback", "gone")
	assertStartedWith(t, f, d, 1)

	// A newcomer on the node now gets it.
	next := fallbackNamed("next", d, t0.Add(time.Minute))
	f.upsert(next)
	f.mustSync("BlockHeightFallback", "next")
	f.mustSync("BlockHeightFallback", "next")
	if h, _ := nodeops.HolderOf(workloadOf(f, d)); h.Name != "next" {
		t.Fatalf("holder %v", h)
	}
}

// TestRecreatedNamesakeDoesNotInheritTheLock: a CR deleted and recreated
// with the same name is another operation (another UID).
func TestRecreatedNamesakeDoesNotInheritTheLock(t *testing.T) {
	d := deployments()[0]
	old := fallbackNamed("same", d, t0)
	f := newFixture(t, append([]runtime.Object{old}, d.objects...)...)
	f.mustSync("BlockHeightFallback", "same")
	f.mustSync("BlockHeightFallback", "same")
	forceAway(f, old)
	again := fallbackNamed("same", d, t0.Add(time.Minute))
	again.UID = types.UID("uid-same-2")
	f.upsert(again)
	rec := orphanRecoveryJob("same", "uid-same")
	for range 8 {
		_ = f.sync("BlockHeightFallback", "same")
		if f.jobExists(rec) && len(f.job(rec).Status.Conditions) == 0 {
			f.finishJob(rec, true, &jobargs.Result{Op: jobargs.OpRecover}) // the old one's recovery
		}
		world(f, d, "uid-same-2", "same-fallback")
	}
	st := f.status(again)
	if st.Status != citav1.PhaseComplete {
		t.Fatalf("recreated operation: %s %s", st.Status, st.Message)
	}
	assertStartedWith(t, f, d, 1)
	_ = jobargs.OpFallback
}

// TestKindsThatWriteTheNodeRoot: what the orphan handling knows of each
// kind without a CR is what its work says (nodeRootWriter).
func TestKindsThatWriteTheNodeRoot(t *testing.T) {
	f := newFixture(t)
	var got []string
	for _, k := range f.c.kinds {
		if k.writesNodeRoot {
			got = append(got, k.name)
		}
	}
	if diff := cmp.Diff([]string{"BlockHeightFallback", "Restore"}, got); diff != "" {
		t.Errorf("kinds that rewrite the node root (-want +got):\n%s", diff)
	}
}

// A workload replaced while the operation holds it (its lock annotations
// gone, replicas back) aborts the operation: it is not stopped a second
// time with the current replicas recorded.
func TestLockLostIsNotRetaken(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.runningJobPod("fb-fallback", nil)
	sts := f.statefulSet("test-chain-node0")
	sts.Annotations = nil
	sts.Spec.Replicas = ptr.To[int32](1)
	f.upsert(sts)
	f.clearWrites()
	for range 3 {
		_ = f.sync("BlockHeightFallback", "fb")
		for _, p := range f.c.jobPods("uid-fb") {
			if !f.jobExists("fb-fallback") {
				f.deletePod(p.Name)
			}
		}
	}
	if n := stopPatches(f); n != 0 {
		t.Fatalf("the replaced workload was stopped again (%d scale-downs)", n)
	}
	if f.jobExists("fb-fallback") {
		t.Fatal("the Job still runs beside the replaced workload")
	}
	assertFailed(t, f.status(cr), ReasonLockLost, "lock on the node's workload is gone")
	if workloadReplicas(f, d) != 1 {
		t.Fatal("replicas not left as the replacement set them")
	}
}
