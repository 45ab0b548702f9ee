package operations

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

func fallbackOn(d deployed) *citav1.BlockHeightFallback {
	return &citav1.BlockHeightFallback{ObjectMeta: meta0("fb"), Spec: citav1.BlockHeightFallbackSpec{
		NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults(), BlockHeight: 100}}
}

// runUntilJob drives a fallback from creation until its Job exists (the
// node stopped, its pod gone).
func runUntilJob(t *testing.T, f *fixture, d deployed) {
	t.Helper()
	f.mustSync("BlockHeightFallback", "fb") // finalizer
	f.mustSync("BlockHeightFallback", "fb") // lock + stop
	f.deletePod(d.pod)
	f.mustSync("BlockHeightFallback", "fb") // job
	if !f.jobExists("fb-fallback") {
		t.Fatal("no Job after the node stopped")
	}
}

// runToEnd syncs until the operation is finished and its finalizer gone,
// deleting the Job's pods when the Job is deleted (the garbage collector).
func runToEnd(t *testing.T, f *fixture, kindName, name string, cr object) *citav1.OperationStatus {
	t.Helper()
	for range 20 {
		if err := f.sync(kindName, name); err != nil && !apierrors.IsConflict(err) {
			t.Logf("sync: %v", err)
		}
		if !f.jobExists(name + "-fallback") {
			for _, p := range f.c.jobPods(string(cr.GetUID())) {
				f.deletePod(p.Name)
			}
		}
		if f.jobExists(name+"-recover") && !jobFinished(f.job(name+"-recover")) {
			f.finishJob(name+"-recover", true, &jobargs.Result{Op: jobargs.OpRecover})
		}
		f.clock.Step(time.Second)
		st := f.status(cr)
		if ended(st) && len(f.cr(cr).GetFinalizers()) == 0 {
			return st
		}
	}
	t.Fatalf("operation did not finish: %+v", f.status(cr))
	return nil
}

func assertStartedWith(t *testing.T, f *fixture, d deployed, replicas int32) {
	t.Helper()
	if got := workloadReplicas(f, d); got != replicas {
		t.Fatalf("workload at %d replicas, want %d", got, replicas)
	}
	if a := workloadAnnotations(f, d); len(a) != 0 {
		t.Fatalf("lock annotations left: %v", a)
	}
}

func assertFailed(t *testing.T, st *citav1.OperationStatus, reason, msgPart string) {
	t.Helper()
	if st.Status != citav1.PhaseFailed {
		t.Fatalf("status %s, want Failed (%s)", st.Status, st.Message)
	}
	assertDecidedFailed(t, st, reason, msgPart)
}

// assertDecidedFailed: the failure is recorded (the node may not be started
// yet).
func assertDecidedFailed(t *testing.T, st *citav1.OperationStatus, reason, msgPart string) {
	t.Helper()
	cond := meta.FindStatusCondition(st.Conditions, citav1.ConditionSucceeded)
	if cond == nil || cond.Reason != reason {
		t.Fatalf("Succeeded condition %+v, want reason %s", cond, reason)
	}
	if !strings.Contains(st.Message, msgPart) {
		t.Fatalf("message %q does not mention %q", st.Message, msgPart)
	}
}

func TestJobFailureStartsTheNode(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			cr := fallbackOn(d)
			f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
			runUntilJob(t, f, d)
			f.finishJob("fb-fallback", false, &jobargs.Result{Op: jobargs.OpFallback, Error: "cloud-op: rollback failed: height 100 above tip 50"})
			st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
			assertFailed(t, st, ReasonJobFailed, "height 100 above tip 50")
			assertStartedWith(t, f, d, d.replicas)
			if f.jobExists("fb-recover") {
				t.Error("a recovery Job ran although the job binary failed cleanly (it puts the data back itself)")
			}
			if !strings.Contains(strings.Join(f.events(), "\n"), "Warning JobFailed") {
				t.Error("no Warning event for the failure")
			}
		})
	}
}

func TestJobDeadlineExceededStartsTheNode(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	job := f.job("fb-fallback")
	job.Status.Conditions = append(job.Status.Conditions, batchJobCondition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"))
	f.upsert(job)
	st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	assertFailed(t, st, ReasonJobFailed, "exceeded its deadline")
	assertStartedWith(t, f, d, 1)
}

// TestJobPodThatCannotStart: an unpullable image fails the operation after
// the job start timeout; the Job is deleted, its pod awaited, the node
// started.
func TestJobPodThatCannotStart(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.runningJobPod("fb-fallback", &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "nope:1"`})
	f.mustSync("BlockHeightFallback", "fb")
	if st := f.status(cr); hasOutcome(st) {
		t.Fatalf("failed before the job start timeout: %s", st.Message)
	}
	f.clock.Step(f.c.cfg.JobStartTimeout)
	f.mustSync("BlockHeightFallback", "fb")
	if !hasOutcome(f.status(cr)) {
		t.Fatal("not failed at the job start timeout")
	}
	f.clearWrites()
	f.mustSync("BlockHeightFallback", "fb") // deletes the Job, waits for its pod
	if got := f.workloadWrites(); len(got) != 0 {
		t.Fatalf("node touched while the Job's pod may still run: %v", got)
	}
	if f.jobExists("fb-fallback") {
		t.Fatal("the Job was not deleted")
	}
	f.mustSync("BlockHeightFallback", "fb")
	if got := workloadReplicas(f, d); got != 0 {
		t.Fatal("node started while the Job's pod still exists")
	}
	st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	assertFailed(t, st, ReasonJobCannotRun, "ImagePullBackOff")
	assertStartedWith(t, f, d, 1)
}

// TestDeletedMidOperation: deleting the CR while its Job runs stops the Job
// and starts the node before the finalizer goes.
func TestDeletedMidOperation(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			cr := fallbackOn(d)
			f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
			runUntilJob(t, f, d)
			f.runningJobPod("fb-fallback", nil)
			f.deleteCR(cr)
			f.mustSync("BlockHeightFallback", "fb")
			if f.jobExists("fb-fallback") {
				t.Fatal("Job not deleted")
			}
			if got := workloadReplicas(f, d); got != 0 {
				t.Fatal("node started while the Job's pod runs")
			}
			if fins := f.cr(cr).GetFinalizers(); len(fins) == 0 {
				t.Fatal("finalizer removed before the node was started")
			}
			f.deletePod("fb-fallback-pod") // garbage collector + kubelet
			f.mustSync("BlockHeightFallback", "fb")
			if got := workloadReplicas(f, d); got != 0 || !f.jobExists("fb-recover") {
				t.Fatalf("a Job killed mid-way must be followed by a recovery Job before the start (replicas %d)", got)
			}
			f.finishJob("fb-recover", true, &jobargs.Result{Op: jobargs.OpRecover, Warning: "an interrupted earlier run's checkpoint was put back"})
			f.mustSync("BlockHeightFallback", "fb")
			assertStartedWith(t, f, d, d.replicas)
			f.mustSync("BlockHeightFallback", "fb")
			if fins := f.cr(cr).GetFinalizers(); len(fins) != 0 {
				t.Fatalf("finalizer left: %v", fins)
			}
			assertFailed(t, f.status(cr), ReasonDeleted, "deleted")
		})
	}
}

// stoppedByFallback is a BlockHeightFallback on d that has just stopped the
// node (finalizer, then lock and stop), its pods still there.
func stoppedByFallback(t *testing.T, d deployed) (*fixture, object) {
	t.Helper()
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	f.mustSync("BlockHeightFallback", "fb")
	f.mustSync("BlockHeightFallback", "fb") // stop
	return f, cr
}

// TestStopThatStalls: a pod that stays after the scale-down is deleted with
// a UID precondition after the grace period; one that is still there at
// the stop timeout fails the operation and the node is started again.
func TestStopThatStalls(t *testing.T) {
	d := deployments()[0]
	f, cr := stoppedByFallback(t, d)
	var deletes []core.DeleteActionImpl
	f.kube.PrependReactor("delete", "pods", func(a core.Action) (bool, runtime.Object, error) {
		deletes = append(deletes, a.(core.DeleteActionImpl))
		return true, nil, nil // the pod stays: a stuck kubelet
	})
	f.clock.Step(f.c.cfg.StopGracePeriod - time.Second)
	f.mustSync("BlockHeightFallback", "fb")
	if len(deletes) != 0 {
		t.Fatal("pod deleted before the grace period")
	}
	f.clock.Step(time.Second)
	f.mustSync("BlockHeightFallback", "fb")
	if len(deletes) != 1 || deletes[0].Name != d.pod {
		t.Fatalf("deletes %+v", deletes)
	}
	if pre := deletes[0].DeleteOptions.Preconditions; pre == nil || pre.UID == nil || string(*pre.UID) != "uid-pod-"+d.pod {
		t.Fatalf("delete without the pod's UID as precondition: %+v", pre)
	}
	f.clock.Step(f.c.cfg.StopTimeout)
	st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	assertFailed(t, st, ReasonStopTimeout, d.pod)
	assertStartedWith(t, f, d, 1)
	if f.jobExists("fb-fallback") {
		t.Fatal("a Job was created although the node never stopped")
	}
}

// TestStopWhileTheWorkloadControllerIsLate: past the grace period, the
// pods of a node whose workload's controller has not yet acted on the stop
// are not deleted (it is late, not stuck: under load it reaches the stop
// later and removes them itself); once it has acted on the stop and left
// them, they are.
func TestStopWhileTheWorkloadControllerIsLate(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			f, _ := stoppedByFallback(t, d)
			// The stop is generation 2; the controller acted on 1.
			f.setGenerations(d, 2, 1)
			var deletes []string
			f.kube.PrependReactor("delete", "pods", func(a core.Action) (bool, runtime.Object, error) {
				deletes = append(deletes, a.(core.DeleteActionImpl).Name)
				return true, nil, nil
			})
			f.clock.Step(f.c.cfg.StopGracePeriod + time.Second)
			f.mustSync("BlockHeightFallback", "fb")
			if len(deletes) != 0 {
				t.Fatalf("pods deleted before the workload's controller acted on the stop: %v", deletes)
			}
			if ev := strings.Join(f.events(), "\n"); strings.Contains(ev, "PodDeleted") {
				t.Fatalf("a PodDeleted event with no pod deleted: %s", ev)
			}
			f.setGenerations(d, 2, 2)
			f.mustSync("BlockHeightFallback", "fb")
			if diff := cmp.Diff([]string{d.pod}, deletes); diff != "" {
				t.Fatalf("deletes once the controller acted on the stop (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStopGraceAsksTheAPIServer: past the grace period a pod the cache still
// shows as live is first read from the apiserver; one the workload's
// controller is already deleting (the cache behind it) is not deleted again
// and no PodDeleted Warning is written.
func TestStopGraceAsksTheAPIServer(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			f, _ := stoppedByFallback(t, d)
			f.events()
			// The controller's delete reaches the store, not the cache.
			podsGVR := corev1.SchemeGroupVersion.WithResource("pods")
			stored, err := f.kube.Tracker().Get(podsGVR, ns, d.pod)
			if err != nil {
				t.Fatal(err)
			}
			pod := stored.(*corev1.Pod)
			pod.DeletionTimestamp = &metav1.Time{Time: f.clock.Now()}
			if err := f.kube.Tracker().Update(podsGVR, pod, ns); err != nil {
				t.Fatal(err)
			}
			f.clock.Step(f.c.cfg.StopGracePeriod + time.Second)
			f.clearWrites()
			if err := f.c.syncOperation(f.ctx, f.c.kindByName["BlockHeightFallback"], cache.ObjectName{Namespace: ns, Name: "fb"}); err != nil {
				t.Fatal(err)
			}
			for _, w := range f.writes() {
				if strings.HasPrefix(w, "delete pods") {
					t.Errorf("a pod its controller is deleting was deleted again: %s", w)
				}
			}
			if ev := strings.Join(f.events(), "\n"); strings.Contains(ev, "PodDeleted") {
				t.Errorf("a PodDeleted event with no pod deleted: %s", ev)
			}
		})
	}
}

// TestStopTimeoutNamesALateController: a stop that times out while the
// workload's controller never acted on it says so, so that it is told from
// a stuck pod; the node is started again all the same.
func TestStopTimeoutNamesALateController(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			f, cr := stoppedByFallback(t, d)
			f.setGenerations(d, 2, 1)
			f.clock.Step(f.c.cfg.StopTimeout)
			st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
			assertFailed(t, st, ReasonStopTimeout, "never acted on the stop")
			if !strings.Contains(st.Message, "at generation 2, its status at 1") {
				t.Errorf("message %q does not give the generations", st.Message)
			}
			assertStartedWith(t, f, d, d.replicas)
		})
	}
}

// setGenerations plays the workload's controller: the workload's spec at
// generation, its controller having acted on observed.
func (f *fixture) setGenerations(d deployed, generation, observed int64) {
	f.t.Helper()
	resource, name, _ := strings.Cut(d.workload, " ")
	if resource == "deployments" {
		w := f.deployment(name)
		w.Generation, w.Status.ObservedGeneration = generation, observed
		f.upsert(w)
		return
	}
	w := f.statefulSet(name)
	w.Generation, w.Status.ObservedGeneration = generation, observed
	f.upsert(w)
}

// TestScaledUpBySomeoneElse: a helm upgrade or GitOps sync scales the node
// back up mid-operation: it aborts and leaves their replica count alone.
func TestScaledUpBySomeoneElse(t *testing.T) {
	d := deployments()[1] // helm: a chart upgrade is the usual culprit
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.runningJobPod("fb-fallback", nil)
	sts := f.statefulSet("helm-chain")
	sts.Spec.Replicas = ptr.To[int32](2)
	f.upsert(sts)
	f.mustSync("BlockHeightFallback", "fb")
	assertDecidedFailed(t, f.status(cr), ReasonScaledByOther, "scaled to 2 by someone else")
	f.mustSync("BlockHeightFallback", "fb")
	if f.jobExists("fb-fallback") {
		t.Fatal("Job not stopped")
	}
	f.deletePod("fb-fallback-pod")
	assertFailed(t, runToEnd(t, f, "BlockHeightFallback", "fb", cr), ReasonScaledByOther, "someone else")
	assertStartedWith(t, f, d, 2)
}

// TestAPIErrorsAtEveryWrite: an error at any write leaves the operation
// where it was; retried, it completes and the node ends at its replicas.
func TestAPIErrorsAtEveryWrite(t *testing.T) {
	type fault struct {
		verb, resource, subresource string
		err                         error
	}
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "x"}, "x", errors.New("stale"))
	boom := apierrors.NewInternalError(errors.New("etcd timeout"))
	faults := map[string]fault{
		"finalizer patch conflict": {"patch", "blockheightfallbacks", "", conflict},
		"stop patch error":         {"patch", "statefulsets", "", boom},
		"job create error":         {"create", "jobs", "", boom},
		"status update conflict":   {"update", "blockheightfallbacks", "status", conflict},
		"status update error":      {"update", "blockheightfallbacks", "status", boom},
		"job ttl patch error":      {"patch", "jobs", "", boom},
	}
	for name, fl := range faults {
		t.Run(name, func(t *testing.T) {
			d := deployments()[0]
			cr := fallbackOn(d)
			f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
			failures := 0
			// Fail every second matching write, so each write fails once.
			f.kube.PrependReactor(fl.verb, fl.resource, faultReactor(fl.subresource, fl.err, &failures))
			f.cita.PrependReactor(fl.verb, fl.resource, faultReactor(fl.subresource, fl.err, &failures))
			for range 40 {
				err := f.sync("BlockHeightFallback", "fb")
				if err != nil && failures == 0 {
					t.Fatalf("error without an injected fault: %v", err)
				}
				if pods, _ := f.c.listers.Pods.Pods(ns).List(everything()); len(pods) > 0 && workloadReplicas(f, d) == 0 {
					for _, p := range pods {
						if p.Name == d.pod {
							f.deletePod(p.Name)
						}
					}
				}
				if f.jobExists("fb-fallback") && len(f.c.jobPods("uid-fb")) == 0 {
					f.finishJob("fb-fallback", true, &jobargs.Result{Op: jobargs.OpFallback})
				}
				if st := f.status(cr); ended(st) && len(f.cr(cr).GetFinalizers()) == 0 {
					break
				}
			}
			if failures == 0 {
				t.Fatal("the fault was never hit")
			}
			st := f.status(cr)
			if st.Status != citav1.PhaseComplete {
				t.Fatalf("status %s: %s", st.Status, st.Message)
			}
			assertStartedWith(t, f, d, 1)
			if jobs, _ := f.kube.BatchV1().Jobs(ns).List(f.ctx, metav1.ListOptions{}); len(jobs.Items) != 1 {
				t.Fatalf("%d Jobs exist, want 1", len(jobs.Items))
			}
		})
	}
}

func faultReactor(subresource string, err error, failures *int) core.ReactionFunc {
	calls := 0
	return func(a core.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != subresource {
			return false, nil, nil
		}
		calls++
		if calls%2 == 1 {
			*failures++
			return true, nil, err
		}
		return false, nil, nil
	}
}

// TestKilledJobIsFollowedByRecovery: a Job that died without a result (OOM
// kill) may have left the node root half-rewritten: a recovery Job runs
// before the start; if even that fails, the node is started anyway and the
// status says the data may be inconsistent.
func TestKilledJobIsFollowedByRecovery(t *testing.T) {
	for _, recovered := range []bool{true, false} {
		t.Run(map[bool]string{true: "recovered", false: "recovery fails"}[recovered], func(t *testing.T) {
			d := deployments()[0]
			cr := fallbackOn(d)
			f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
			runUntilJob(t, f, d)
			f.finishJob("fb-fallback", false, nil) // killed: no termination message
			f.mustSync("BlockHeightFallback", "fb")
			f.mustSync("BlockHeightFallback", "fb")
			if !f.jobExists("fb-recover") || workloadReplicas(f, d) != 0 {
				t.Fatal("no recovery Job before the start")
			}
			args, err := jobargs.Parse(f.job("fb-recover").Spec.Template.Spec.Containers[0].Command)
			if err != nil || args.Op != jobargs.OpRecover {
				t.Fatalf("recovery command %v: %v", args, err)
			}
			if recovered {
				f.finishJob("fb-recover", true, &jobargs.Result{Op: jobargs.OpRecover, Warning: "an interrupted earlier run's checkpoint was put back"})
			} else {
				f.finishJob("fb-recover", false, &jobargs.Result{Op: jobargs.OpRecover, Error: "disk on fire"})
			}
			st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
			assertFailed(t, st, ReasonJobFailed, "fb-fallback failed")
			want := map[bool]string{true: "checkpoint was put back", false: "may be inconsistent"}[recovered]
			if !strings.Contains(st.Message, want) {
				t.Errorf("message %q does not say %q", st.Message, want)
			}
			assertStartedWith(t, f, d, 1)
			if ttl := f.job("fb-recover").Spec.TTLSecondsAfterFinished; ttl == nil {
				t.Error("recovery Job kept forever")
			}
		})
	}
}

// TestUnschedulableJobPod: a Job pod the scheduler cannot place fails the
// operation after the job start timeout, naming the reason; the node is
// started again.
func TestUnschedulableJobPod(t *testing.T) {
	d := deployments()[2]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	pod := f.runningJobPod("fb-fallback", nil)
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
	}}}
	f.upsert(pod)
	f.clock.Step(f.c.cfg.JobStartTimeout)
	f.mustSync("BlockHeightFallback", "fb")
	assertDecidedFailed(t, f.status(cr), ReasonJobCannotRun, "unschedulable: 0/2 nodes are available")
	f.mustSync("BlockHeightFallback", "fb") // deletes the Job
	f.deletePod(pod.Name)
	st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	assertFailed(t, st, ReasonJobCannotRun, "could not start within 2m0s")
	assertStartedWith(t, f, d, 1)
	if f.jobExists("fb-recover") {
		t.Error("a recovery Job for a Job that never started")
	}
}

// TestJobThatNeverStarts: whatever keeps the Job's pod from starting — a
// volume that will not mount, no pod created at all — the operation fails
// at the job start timeout and the node is started; a pod that runs is
// never timed out.
func TestJobThatNeverStarts(t *testing.T) {
	cases := map[string]struct {
		pod  func(f *fixture)
		want string
	}{
		"volume never mounts": {
			pod: func(f *fixture) {
				f.runningJobPod("fb-fallback", &corev1.ContainerStateWaiting{Reason: "ContainerCreating"})
			},
			want: "cannot start: ContainerCreating",
		},
		"no pod created": {
			pod:  func(*fixture) {},
			want: "the Job has created no pod",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := deployments()[0]
			cr := fallbackOn(d)
			f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
			runUntilJob(t, f, d)
			tc.pod(f)
			f.clock.Step(f.c.cfg.JobStartTimeout - time.Second)
			f.mustSync("BlockHeightFallback", "fb")
			if hasOutcome(f.status(cr)) {
				t.Fatal("failed before the job start timeout")
			}
			f.clock.Step(time.Second)
			f.mustSync("BlockHeightFallback", "fb")
			assertDecidedFailed(t, f.status(cr), ReasonJobCannotRun, tc.want)
			st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
			assertFailed(t, st, ReasonJobCannotRun, tc.want)
			assertStartedWith(t, f, d, 1)
		})
	}
	t.Run("a running pod is not timed out", func(t *testing.T) {
		d := deployments()[0]
		cr := fallbackOn(d)
		f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
		runUntilJob(t, f, d)
		f.runningJobPod("fb-fallback", nil)
		f.clock.Step(10 * f.c.cfg.JobStartTimeout)
		f.mustSync("BlockHeightFallback", "fb")
		if hasOutcome(f.status(cr)) {
			t.Fatalf("a running Job was failed: %s", f.status(cr).Message)
		}
	})
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
