package operations

import (
	"errors"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	core "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Regression tests for the findings of a review of the state machine: each
// is an interleaving that left a node down, ran something twice or broke a
// node's identity.

// A running recovery Job is never killed by the wait for the main Job's
// pods (it was, when the CR was deleted mid-run).
func TestRecoveryJobIsNotKilledByStopJob(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.runningJobPod("fb-fallback", nil)
	f.deleteCR(cr)
	f.mustSync("BlockHeightFallback", "fb")
	f.deletePod("fb-fallback-pod")
	f.mustSync("BlockHeightFallback", "fb")
	if !f.jobExists("fb-recover") {
		t.Fatal("no recovery Job")
	}
	f.runningJobPod("fb-recover", nil)
	f.clearWrites()
	f.mustSync("BlockHeightFallback", "fb")
	for _, w := range f.writes() {
		if strings.Contains(w, "fb-recover") || strings.Contains(w, "statefulsets") {
			t.Fatalf("while the recovery Job runs: %s", w)
		}
	}
	f.finishJob("fb-recover", true, &jobargs.Result{Op: jobargs.OpRecover})
	runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	assertStartedWith(t, f, d, 1)
}

// A recovery Job whose pod cannot start does not keep the node down.
func TestRecoveryJobThatCannotStart(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.finishJob("fb-fallback", false, nil) // OOM kill: no result
	for range 3 {
		_ = f.sync("BlockHeightFallback", "fb")
	}
	if !f.jobExists("fb-recover") {
		t.Fatalf("no recovery Job: %s", f.status(cr).Message)
	}
	f.runningJobPod("fb-recover", &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "registry down"})
	for range 20 {
		_ = f.sync("BlockHeightFallback", "fb")
		for _, p := range f.c.jobPods("uid-fb") {
			if !f.jobExists("fb-recover") {
				f.deletePod(p.Name) // the garbage collector
			}
		}
		f.clock.Step(time.Minute)
	}
	assertStartedWith(t, f, d, 1)
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

// Errors that persist once the node is stopped end the operation and start
// the node: the source Backup deleted meanwhile, a Job or a PVC refused.
func TestPersistentErrorsAfterTheStop(t *testing.T) {
	forbid := func(resource string) func(f *fixture) {
		return func(f *fixture) {
			f.kube.PrependReactor("create", resource, func(core.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "x", errors.New("denied by policy"))
			})
		}
	}
	flaky := func(f *fixture) {
		f.kube.PrependReactor("create", "jobs", func(core.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewServiceUnavailable("admission webhook unreachable")
		})
	}
	cases := map[string]struct {
		cr           func(d deployed) object
		extra        []runtime.Object
		fault        func(f *fixture)
		afterStop    func(f *fixture)
		reason, want string
	}{
		"restore source deleted after the stop": {
			cr:    func(d deployed) object { return restoreFrom(d, "b", "") },
			extra: completeBackup("b", "test-chain", citav1.PhaseComplete),
			afterStop: func(f *fixture) {
				if err := f.cita.Tracker().Delete(citav1.SchemeGroupVersion.WithResource("backups"), ns, "b"); err != nil {
					f.t.Fatal(err)
				}
				f.refresh()
			},
			reason: ReasonInvalid, want: "Backup app-rivspace/b does not exist",
		},
		"job refused by admission": {
			cr: func(d deployed) object { return fallbackOn(d) }, fault: forbid("jobs"),
			reason: ReasonJobCannotRun, want: "denied by policy",
		},
		"backup PVC refused by quota": {
			cr: func(d deployed) object { return backupNamed("bk", d, t0) }, fault: forbid("persistentvolumeclaims"),
			reason: ReasonJobCannotRun, want: "denied by policy",
		},
		"job creation failing until the start timeout": {
			cr: func(d deployed) object { return fallbackOn(d) }, fault: flaky,
			reason: ReasonJobCannotRun, want: "no Job could be created within",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := deployments()[0]
			cr := tc.cr(d)
			gvks, _, _ := scheme().ObjectKinds(cr)
			kind := gvks[0].Kind
			f := newFixture(t, append(append([]runtime.Object{cr}, d.objects...), tc.extra...)...)
			if tc.fault != nil {
				tc.fault(f)
			}
			f.mustSync(kind, cr.GetName())
			f.mustSync(kind, cr.GetName()) // lock + stop
			if tc.afterStop != nil {
				tc.afterStop(f)
			}
			f.deletePod(d.pod)
			for range 10 {
				_ = f.sync(kind, cr.GetName())
				f.clock.Step(time.Minute)
			}
			assertFailed(t, f.status(cr), tc.reason, tc.want)
			assertStartedWith(t, f, d, 1)
		})
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

// A Direct fallback killed outright is recovered too: the node is stopped
// (by its owner), so the node root is checked before the lock is released.
func TestDirectKilledJobIsRecovered(t *testing.T) {
	d := deployments()[0]
	d.objects = cloudConfigNode("test-chain-node0", 0, false)
	cr := fallbackOn(d)
	cr.Spec.Action = citav1.ActionDirect
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	for range 3 {
		f.mustSync("BlockHeightFallback", "fb")
	}
	if !f.jobExists("fb-fallback") {
		t.Fatalf("no Job: %s", f.status(cr).Message)
	}
	f.finishJob("fb-fallback", false, nil)
	for range 3 {
		_ = f.sync("BlockHeightFallback", "fb")
	}
	if !f.jobExists("fb-recover") {
		t.Fatal("no recovery Job for a killed Direct fallback")
	}
}

// refuseRecoveryJobs makes the apiserver refuse every recovery Job for good,
// as an admission policy or an exhausted quota would.
func refuseRecoveryJobs(f *fixture) {
	f.kube.PrependReactor("create", "jobs", func(a core.Action) (bool, runtime.Object, error) {
		job := a.(core.CreateAction).GetObject().(*batchv1.Job)
		if !strings.Contains(job.Name, "recover") {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, job.Name, errors.New("exceeded quota: jobs"))
	})
}

// A recovery Job the apiserver refuses for good does not keep the node
// down: it is started, with a Warning saying its node root went unchecked.
func TestRefusedRecoveryJobDoesNotKeepTheNodeDown(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	refuseRecoveryJobs(f)
	f.finishJob("fb-fallback", false, nil) // killed: no termination message
	runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	assertStartedWith(t, f, d, 1)
	if events := strings.Join(f.events(), "\n"); !strings.Contains(events, "Warning RecoveryImpossible") {
		t.Errorf("events %s, want RecoveryImpossible", events)
	}
}

// The same for an orphaned node's recovery Job.
func TestRefusedOrphanRecoveryJobDoesNotKeepTheNodeDown(t *testing.T) {
	f, d, _ := stoppedThenOrphaned(t)
	refuseRecoveryJobs(f)
	f.mustSync("BlockHeightFallback", "gone")
	assertStartedWith(t, f, d, 1)
	if events := strings.Join(f.events(), "\n"); !strings.Contains(events, "Warning RecoveryImpossible") {
		t.Errorf("events %s, want RecoveryImpossible", events)
	}
}
