package operations

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

// Pod states a started node can be stuck in, as the kubelet and the
// scheduler report them.
func crashLooping(p *corev1.Pod) *corev1.Pod {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "network", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		{Name: "consensus", RestartCount: 4, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "CrashLoopBackOff", Message: "back-off 1m20s restarting failed container=consensus"}}},
	}
	return p
}

func imagePullBackOff(p *corev1.Pod) *corev1.Pod {
	p.Status.Phase = corev1.PodPending
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "controller", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason: "ImagePullBackOff", Message: `Back-off pulling image "citacloud/controller_hsm:v9"`}}}}
	return p
}

func unschedulable(p *corev1.Pod) *corev1.Pod {
	p.Spec.NodeName = ""
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient cpu."}}}
	return p
}

// startFallback drives a fallback to the start of its node after a
// successful Job, each new pod of the started node shaped by pod.
func startFallback(t *testing.T, d deployed, pod func(*corev1.Pod) *corev1.Pod, objs ...runtime.Object) *fixture {
	t.Helper()
	f := newFixture(t, append(append([]runtime.Object{fallbackOn(d)}, d.objects...), objs...)...)
	f.startedPod = pod
	runUntilJob(t, f, d)
	f.finishJob("fb-fallback", true, &jobargs.Result{Op: jobargs.OpFallback, BlockHeight: 100, Seconds: 1})
	f.mustSync("BlockHeightFallback", "fb") // outcome + start
	assertStartedWith(t, f, d, d.replicas)
	st := f.status(fallbackOn(d))
	if st.Status != citav1.PhaseActive || st.Step != citav1.StepStarting {
		t.Fatalf("after the start: %s/%s: %s", st.Status, st.Step, st.Message)
	}
	if c := meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady); c == nil || c.Status != metav1.ConditionUnknown || c.Reason != ReasonAwaitingReady {
		t.Fatalf("NodeReady after the start: %+v", c)
	}
	return f
}

// TestStartedNodeNotReadyFails: a node whose pods do not become Ready
// within the timeout fails the operation with NodeNotReady; the message
// keeps what the Job did and names the pod and what holds it; the node is
// left started; before the timeout the operation stays Active.
func TestStartedNodeNotReadyFails(t *testing.T) {
	for name, tc := range map[string]struct {
		d    deployed
		pod  func(*corev1.Pod) *corev1.Pod
		want []string
	}{
		"CrashLoopBackOff": {d: deployments()[0], pod: crashLooping,
			want: []string{"StatefulSet/test-chain-node0 has 0 of 1 pods Ready", "pod test-chain-node0-0: container consensus CrashLoopBackOff: back-off 1m20s", "restarts: 4"}},
		"ImagePullBackOff": {d: deployments()[2], pod: imagePullBackOff,
			want: []string{"Deployment/py-node0 has 0 of 1 pods Ready", "container controller ImagePullBackOff", "citacloud/controller_hsm:v9"}},
		"Pending": {d: deployments()[1], pod: unschedulable,
			// Only the node's pod is awaited at the stop: the chain's other
			// two pods, never gone in this test, are Ready.
			want: []string{"StatefulSet/helm-chain has 2 of 3 pods Ready", "pod helm-chain-1 is Pending: Unschedulable: 0/3 nodes are available"}},
		"no pod created": {d: deployments()[0], pod: func(*corev1.Pod) *corev1.Pod { return nil },
			want: []string{"StatefulSet/test-chain-node0 has 0 of 1 pods Ready"}},
	} {
		t.Run(name, func(t *testing.T) {
			f := startFallback(t, tc.d, tc.pod)
			cr := fallbackOn(tc.d)
			f.events()
			f.clock.Step(4*time.Minute + 59*time.Second)
			f.mustSync("BlockHeightFallback", "fb")
			if st := f.status(cr); st.Status != citav1.PhaseActive || st.Step != citav1.StepStarting {
				t.Fatalf("before the timeout: %s/%s: %s", st.Status, st.Step, st.Message)
			}
			f.clock.Step(time.Second)
			f.mustSync("BlockHeightFallback", "fb")
			st := f.status(cr)
			assertFailed(t, st, ReasonNodeNotReady, "Job fb-fallback succeeded in 1.0s; the node did not become Ready within 5m0s: ")
			for _, w := range tc.want {
				if !strings.Contains(st.Message, w) {
					t.Errorf("message %q does not say %q", st.Message, w)
				}
			}
			if c := meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonNodeNotReady || !strings.Contains(c.Message, tc.want[0]) {
				t.Errorf("NodeReady %+v", c)
			}
			if st.Job == nil || !strings.Contains(st.Job.Result, `"op":"fallback"`) {
				t.Errorf("the Job's result is not kept: %+v", st.Job)
			}
			assertStartedWith(t, f, tc.d, tc.d.replicas)
			if ev := strings.Join(f.events(), "\n"); !strings.Contains(ev, "Warning NodeNotReady") {
				t.Errorf("no NodeNotReady event in:\n%s", ev)
			}
			runToEnd(t, f, "BlockHeightFallback", "fb", cr)
		})
	}
}

// TestStartedNodeReadyLater: pods that become Ready before the timeout,
// seen through their own update, complete the operation.
func TestStartedNodeReadyLater(t *testing.T) {
	d := deployments()[0]
	f := startFallback(t, d, crashLooping)
	cr := fallbackOn(d)
	f.clock.Step(3 * time.Minute)
	f.mustSync("BlockHeightFallback", "fb")
	if st := f.status(cr); st.Status != citav1.PhaseActive {
		t.Fatalf("crash-looping: %s", st.Status)
	}
	p, err := f.kube.CoreV1().Pods(ns).Get(f.ctx, "test-chain-node0-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	p.Status.ContainerStatuses = nil
	f.upsert(p)
	f.mustSync("BlockHeightFallback", "fb")
	st := f.status(cr)
	if st.Status != citav1.PhaseComplete || !meta.IsStatusConditionTrue(st.Conditions, citav1.ConditionNodeReady) {
		t.Fatalf("Ready in time: %s/%s: %s %+v", st.Status, st.Step, st.Message, st.Conditions)
	}
	if !strings.Contains(st.Message, "every pod of StatefulSet/test-chain-node0 is Ready") {
		t.Errorf("message %q", st.Message)
	}
}

// TestReadyWaitSurvivesARestart: an operator restarted during the wait
// goes on waiting, and its deadline still counts from the start.
func TestReadyWaitSurvivesARestart(t *testing.T) {
	d := deployments()[0]
	f := startFallback(t, d, crashLooping)
	cr := fallbackOn(d)
	f.clock.Step(4 * time.Minute)
	f.start() // a new operator, fresh caches
	f.clearWrites()
	f.mustSync("BlockHeightFallback", "fb")
	if st := f.status(cr); st.Status != citav1.PhaseActive || st.Step != citav1.StepStarting {
		t.Fatalf("after the restart: %s/%s", st.Status, st.Step)
	}
	if n := countWrites(f, "patch statefulsets"); n != 0 {
		t.Fatalf("the restarted operator wrote the workload %d times", n)
	}
	f.clock.Step(time.Minute)
	f.mustSync("BlockHeightFallback", "fb")
	assertFailed(t, f.status(cr), ReasonNodeNotReady, "within 5m0s")
}

// TestWorkloadDeletedDuringTheReadyWait fails at once: no pod can come.
func TestWorkloadDeletedDuringTheReadyWait(t *testing.T) {
	d := deployments()[2]
	f := startFallback(t, d, crashLooping)
	if err := f.kube.AppsV1().Deployments(ns).Delete(f.ctx, "py-node0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.mustSync("BlockHeightFallback", "fb")
	assertFailed(t, f.status(fallbackOn(d)), ReasonNodeNotReady, "Deployment/py-node0 was deleted before its pods were Ready")
}

// TestQueuedOperationDoesNotWaitForReady: the lock is released at the
// start; the next operation on the node takes it while the first still
// awaits the pods, and the first, whose work is done, completes saying so.
func TestQueuedOperationDoesNotWaitForReady(t *testing.T) {
	d := deployments()[0]
	second := backupNamed("second", d, t0.Add(time.Second))
	f := startFallback(t, d, crashLooping, second)
	f.clearWrites()
	f.mustSync("Backup", "second") // finalizer
	f.mustSync("Backup", "second") // lock + stop
	w := workloadOf(f, d)
	if h, held := nodeops.HolderOf(w); !held || h.Name != "second" {
		t.Fatalf("the queued Backup did not take the node while the fallback awaited Ready: holder %v, status %+v", h, f.status(second))
	}
	f.clearWrites()
	f.mustSync("BlockHeightFallback", "fb")
	st := f.status(fallbackOn(d))
	if st.Status != citav1.PhaseComplete {
		t.Fatalf("fallback: %s: %s", st.Status, st.Message)
	}
	if c := meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady); c == nil || c.Reason != ReasonTakenOver || !strings.Contains(c.Message, "Backup/second took StatefulSet/test-chain-node0") {
		t.Fatalf("NodeReady %+v", c)
	}
	if n := countWrites(f, "patch statefulsets"); n != 0 {
		t.Fatalf("the fallback wrote the workload %d times after the start", n)
	}
}

// TestNoReadyWaitWithoutAStart: a failed operation and a Direct one end
// at once; a CR deleted during the wait is not kept for it.
func TestNoReadyWaitWithoutAStart(t *testing.T) {
	d := deployments()[0]
	t.Run("failed", func(t *testing.T) {
		f := newFixture(t, append([]runtime.Object{fallbackOn(d)}, d.objects...)...)
		f.startedPod = crashLooping
		runUntilJob(t, f, d)
		f.finishJob("fb-fallback", false, &jobargs.Result{Op: jobargs.OpFallback, Error: "cloud-op rollback failed"})
		f.mustSync("BlockHeightFallback", "fb")
		st := f.status(fallbackOn(d))
		assertFailed(t, st, ReasonJobFailed, "cloud-op rollback failed")
		if c := meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady); c != nil {
			t.Fatalf("NodeReady on a failed operation: %+v", c)
		}
	})
	t.Run("direct", func(t *testing.T) {
		cr := &citav1.Backup{ObjectMeta: meta0("bk"), Spec: citav1.BackupSpec{NodeTarget: nodeTarget(d), JobOptions: jobDefaults(),
			NodeJobOptions: citav1.NodeJobOptions{Action: citav1.ActionDirect, PodAffinityFlag: ptr.To(false)}}}
		f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
		for range 3 {
			f.mustSync("Backup", "bk")
		}
		f.finishJob("bk-backup", true, &jobargs.Result{Op: jobargs.OpBackup, Bytes: 1, Files: 1})
		f.mustSync("Backup", "bk")
		st := f.status(cr)
		if st.Status != citav1.PhaseComplete || meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady) != nil {
			t.Fatalf("Direct: %s/%s %+v", st.Status, st.Step, st.Conditions)
		}
	})
	t.Run("node stopped before", func(t *testing.T) {
		stopped := d
		stopped.objects = nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster, nodetest.Stopped())
		f := newFixture(t, append([]runtime.Object{fallbackOn(d)}, stopped.objects...)...)
		runUntilJob(t, f, stopped)
		f.finishJob("fb-fallback", true, &jobargs.Result{Op: jobargs.OpFallback})
		f.mustSync("BlockHeightFallback", "fb")
		st := f.status(fallbackOn(d))
		if st.Status != citav1.PhaseComplete || meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady) != nil {
			t.Fatalf("a node at 0 replicas before is awaited: %s/%s %+v", st.Status, st.Step, st.Conditions)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		f := startFallback(t, d, crashLooping)
		cr := fallbackOn(d)
		f.deleteCR(f.cr(cr))
		runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	})
}
