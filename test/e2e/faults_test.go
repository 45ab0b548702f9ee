package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

func fallbackYAML(ns, name string, n *node, height int64, extra string) string {
	return fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: BlockHeightFallback\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  chain: %s\n  node: %s\n  deployMethod: %s\n  blockHeight: %d\n%s",
		name, ns, n.chain, n.name, n.method, height, extra)
}

// TestJobFailureRestartsTheNode: cloud-op fails (the fake refuses a height
// above the tip): Failed with cloud-op's reason, node started again.
func TestJobFailureRestartsTheNode(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-jobfail")
	n := deployCloudConfig(t, ns, "jf", "jf-node0")
	mustApply(t, fallbackYAML(ns, "too-high", n, failingHeight, ""))
	st := waitOp(t, "BlockHeightFallback", ns, "too-high", opTimeout)
	if st.Status != citav1.PhaseFailed || !strings.Contains(st.Message, "height above tip") {
		t.Fatalf("status %s: %q", st.Status, st.Message)
	}
	if r := n.specReplicas(t); r != 1 {
		t.Fatalf("node at %d replicas after the failure", r)
	}
	if reasons := strings.Join(eventReasons(t, ns, "too-high"), ","); !strings.Contains(reasons, "Warning JobFailed") {
		t.Errorf("no Warning JobFailed event: %s", reasons)
	}
}

// TestUnpullableJobImage: a Job pod that cannot pull its image fails the
// operation within the job start timeout (15s here) and the node is back.
func TestUnpullableJobImage(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-unpullable")
	n := deployPython(t, ns, "up", "up-node0")
	start := time.Now()
	mustApply(t, fallbackYAML(ns, "bad-image", n, 10, "  image: registry.invalid/unpullable:v1\n"))
	st := waitOp(t, "BlockHeightFallback", ns, "bad-image", opTimeout)
	if st.Status != citav1.PhaseFailed || !strings.Contains(st.Message, "could not start") {
		t.Fatalf("status %s: %q", st.Status, st.Message)
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Fatalf("took %s to fail", took)
	}
	if r := n.specReplicas(t); r != 1 {
		t.Fatalf("node at %d replicas", r)
	}
}

// TestDeletedMidOperation: deleting the CR while its Job runs stops the Job,
// starts the node, then lets the CR go.
func TestDeletedMidOperation(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-deleted")
	n := deployHelm(t, ns, "del", 2)[0]
	mustApply(t, fallbackYAML(ns, "doomed", n, slowHeight, ""))
	eventually(t, opTimeout, "the Job pod running", func() (bool, string) {
		_, obj, err := opStatus(t, "BlockHeightFallback", ns, "doomed")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range jobPods(t, ns, string(obj.GetUID())) {
			if p.Status.Phase == "Running" {
				return true, ""
			}
		}
		return false, "no running job pod"
	})
	if err := env.cita.CitacloudV1().BlockHeightFallbacks(ns).Delete(env.ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, opTimeout, "the CR gone", func() (bool, string) {
		_, _, err := opStatus(t, "BlockHeightFallback", ns, "doomed")
		return notFound(err), fmt.Sprint(err)
	})
	if r := n.specReplicas(t); r != 2 {
		t.Fatalf("node at %d replicas after its operation was deleted", r)
	}
	if a := lockAnnotations(n.annotations(t)); len(a) > 0 {
		t.Fatalf("lock left: %v", a)
	}
}

// TestFinalizerRemovedByHandMidOperation: an operation forced away (its
// finalizer removed by hand, then deleted) while its Job rewrites the node's
// data leaves a stopped node that only the operator's orphan handling
// starts: the Job is stopped, a recovery Job owned by the node's StatefulSet
// checks the node root, then the node starts at its replicas. It is done
// while the operator is down: a running operator puts its finalizer back
// as soon as it sees it gone and then handles the deletion itself
// (TestDeletedMidOperation).
func TestFinalizerRemovedByHandMidOperation(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-orphan")
	n := deployCloudConfig(t, ns, "orph", "orph-node0")
	mustApply(t, fallbackYAML(ns, "forced", n, slowHeight, ""))
	var uid string
	eventually(t, opTimeout, "the Job pod running", func() (bool, string) {
		_, obj, err := opStatus(t, "BlockHeightFallback", ns, "forced")
		if err != nil {
			return false, err.Error()
		}
		uid = string(obj.GetUID())
		for _, p := range jobPods(t, ns, uid) {
			if p.Status.Phase == "Running" {
				return true, ""
			}
		}
		return false, "no running job pod"
	})
	env.operator.kill()
	c := env.cita.CitacloudV1().BlockHeightFallbacks(ns)
	if _, err := c.Patch(env.ctx, "forced", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(env.ctx, "forced", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.operator.start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, opTimeout, "the node started and released", func() (bool, string) {
		r, a := n.specReplicas(t), lockAnnotations(n.annotations(t))
		return r == n.replicas && len(a) == 0, fmt.Sprintf("replicas %d, lock %v", r, a)
	})
	reasons := strings.Join(eventReasons(t, ns, n.name), ", ")
	for _, want := range []string{"Normal RecoveryJobCreated", "Normal NodeRootChecked"} {
		if !strings.Contains(reasons, want) {
			t.Errorf("events on StatefulSet %s: %s; want %s", n.name, reasons, want)
		}
	}
	job, err := env.kube.BatchV1().Jobs(ns).Get(env.ctx, nodeops.JobName("forced", "recover-"+uid[:8]), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the recovery Job: %v", err)
	}
	if refs := job.OwnerReferences; len(refs) != 1 || refs[0].Kind != "StatefulSet" || refs[0].Name != n.name {
		t.Errorf("recovery Job owned by %+v, want the node's StatefulSet", refs)
	}
}

// TestTwoOperationsOnOneNodeAreSerialized: the second waits with a
// condition naming the first, then runs.
func TestTwoOperationsOnOneNodeAreSerialized(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-serial")
	n := deployCloudConfig(t, ns, "ser", "ser-node0")
	watchStops(t, n)
	mustApply(t, fallbackYAML(ns, "first", n, slowHeight, ""))
	eventually(t, opTimeout, "first holding the node", func() (bool, string) {
		h := n.annotations(t)["citacloud.rivtower.com/operation"]
		return h == "BlockHeightFallback/first", h
	})
	mustApply(t, fallbackYAML(ns, "second", n, 5, ""))
	eventually(t, opTimeout, "second waiting", func() (bool, string) {
		st, _, err := opStatus(t, "BlockHeightFallback", ns, "second")
		if err != nil {
			return false, err.Error()
		}
		return st.Step == citav1.StepWaiting && strings.Contains(st.Message, "held by BlockHeightFallback/first"), st.Message
	})
	first := waitOp(t, "BlockHeightFallback", ns, "first", opTimeout)
	second := waitOp(t, "BlockHeightFallback", ns, "second", opTimeout)
	mustComplete(t, first)
	mustComplete(t, second)
	if !first.EndTime.Before(secondStart(t, ns)) && !first.EndTime.Equal(secondStart(t, ns)) {
		t.Fatalf("second's Job started before first ended")
	}
	if r := n.specReplicas(t); r != 1 {
		t.Fatalf("node at %d replicas", r)
	}
}

func secondStart(t *testing.T, ns string) *metav1.Time {
	t.Helper()
	j, err := env.kube.BatchV1().Jobs(ns).Get(env.ctx, "second-fallback", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &j.CreationTimestamp
}

// TestOperatorKilledAtEveryStep: the operator process is SIGKILLed at each
// point of an operation — after it locked and stopped the node, after it
// created the Job, while the Job runs, after the Job finished, after it
// started the node and recorded the outcome — and started again each time. The operation finishes with one Job and the node at its replicas.
func TestOperatorKilledAtEveryStep(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-killed")
	n := deployCloudConfig(t, ns, "kill", "kill-node0")
	watchStops(t, n)
	mustApply(t, fallbackYAML(ns, "kf", n, slowHeight, ""))
	points := []struct {
		name    string
		reached func() bool
	}{
		{"locked and stopped", func() bool { return n.annotations(t)["citacloud.rivtower.com/operation"] == "BlockHeightFallback/kf" }},
		{"Job created", func() bool {
			_, err := env.kube.BatchV1().Jobs(ns).Get(env.ctx, "kf-fallback", metav1.GetOptions{})
			return err == nil
		}},
		{"Job running", func() bool {
			p, err := env.kube.CoreV1().Pods(ns).List(env.ctx, metav1.ListOptions{LabelSelector: "job-name=kf-fallback"})
			return err == nil && len(p.Items) > 0 && p.Items[0].Status.Phase == "Running"
		}},
		{"Job finished", func() bool {
			j, err := env.kube.BatchV1().Jobs(ns).Get(env.ctx, "kf-fallback", metav1.GetOptions{})
			return err == nil && jobDone(j.Status.Conditions)
		}},
		{"node started", func() bool {
			st, _, err := opStatus(t, "BlockHeightFallback", ns, "kf")
			return err == nil && st.Status == citav1.PhaseComplete
		}},
	}
	var killed []string
	for _, p := range points {
		deadline := time.Now().Add(opTimeout)
		for !p.reached() {
			if time.Now().After(deadline) {
				t.Fatalf("never reached %q (killed at %v)", p.name, killed)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := env.operator.restart(); err != nil {
			t.Fatal(err)
		}
		killed = append(killed, p.name)
	}
	st := waitOp(t, "BlockHeightFallback", ns, "kf", opTimeout)
	mustComplete(t, st)
	jobs, _ := env.kube.BatchV1().Jobs(ns).List(env.ctx, metav1.ListOptions{})
	if len(jobs.Items) != 1 {
		t.Fatalf("%d Jobs", len(jobs.Items))
	}
	if r := n.specReplicas(t); r != 1 {
		t.Fatalf("node at %d replicas", r)
	}
	if a := lockAnnotations(n.annotations(t)); len(a) > 0 {
		t.Fatalf("lock left: %v", a)
	}
}

func jobDone(conds []batchv1.JobCondition) bool {
	for _, c := range conds {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == "True" {
			return true
		}
	}
	return false
}
