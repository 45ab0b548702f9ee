package operations

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// A kind whose Job rewrites the node root in place (Hooks.WritesNodeRoot:
// fallback, restore) may leave it half-rewritten when the Job is killed
// outright (OOM kill, a lost machine), so before such a node is started
// again a recovery Job puts back what the killed run left.

func (op *operation) recoveryJobName() string { return nodeops.JobName(op.obj.GetName(), "recover") }

// needsRecovery: the operation failed after its Job may have started
// rewriting the node root, and the Job did not report a failure it handled.
func needsRecovery(op *operation) bool {
	if !op.kind.writesNodeRoot || op.status.Job == nil {
		return false
	}
	cond := meta.FindStatusCondition(op.status.Conditions, citav1.ConditionSucceeded)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason == ReasonJobCannotRun || cond.Reason == ReasonInvalid {
		return false
	}
	if r, err := jobargs.DecodeResult([]byte(op.status.Job.Result)); err == nil && r.Error != "" {
		return false // the job binary failed cleanly and put the data back
	}
	return true
}

// recoverNodeRoot runs the recovery Job and waits for it. Whatever its
// outcome the node is then started (a stopped node is always started
// again); a failed recovery is reported loudly.
func (c *Controller) recoverNodeRoot(ctx context.Context, op *operation) (time.Duration, error) {
	if !needsRecovery(op) {
		return 0, nil
	}
	// Only on a node that is still at 0 replicas (stopped by this
	// operation, or already stopped for a Direct one): one that someone
	// scaled up meanwhile is running on that data already.
	for _, w := range c.heldWorkloads(op) {
		if w.Replicas != 0 {
			c.event(op, eventWarning, "RecoverySkipped", "%s is at %d replicas: the node root was not checked after the Job was stopped", w.Key(), w.Replicas)
			return 0, nil
		}
	}
	name := op.recoveryJobName()
	job, err := c.jobs.Jobs(op.obj.GetNamespace()).Get(name)
	if apierrors.IsNotFound(err) {
		nodes, err := c.locate(op)
		if err != nil {
			c.event(op, eventWarning, "RecoveryImpossible", "cannot check the node root before starting the node: %v", err)
			return 0, nil
		}
		var machine string
		if op.affinity {
			machine = c.recordedMachine(op, nodes[0])
		}
		job := nodeops.Job(nodeops.JobRequest{
			Name: name, Namespace: op.obj.GetNamespace(), Owner: op.ownerRef(),
			Image: c.jobImage(op), Pull: op.job.PullPolicy,
			Args: jobargs.Args{Op: jobargs.OpRecover, NodeRoot: jobargs.NodeRootMountPath},
			Node: nodes[0], Machine: machine,
			ActiveDeadlineSeconds: int64(c.cfg.JobActiveDeadline / time.Second),
		})
		if _, err := c.deps.Kube.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{}); refused(err) {
			c.event(op, eventWarning, "RecoveryImpossible", "recovery Job %s refused (%v): starting the node without checking its node root", name, err)
			return 0, nil
		} else if err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, err
		}
		op.setStep(citav1.StepStarting, "checking the node root with Job %s before starting the node", name)
		c.event(op, eventNormal, "RecoveryJobCreated", "the Job may have been killed while rewriting the node's data: Job %s puts back what it left before the node starts", name)
		return c.cfg.JobStartTimeout, nil
	}
	if err != nil {
		return 0, err
	}
	if !metav1.IsControlledBy(job, op.obj) {
		return 0, nil
	}
	if !jobFinished(job) {
		why, after := c.jobCannotStart(job)
		if why == "" || after > 0 {
			return max(after, 2*time.Second), nil
		}
		c.event(op, eventWarning, "RecoveryFailed", "recovery Job %s could not start: %s; starting the node anyway", name, why)
		if err := c.deleteJob(ctx, job.Namespace, job.Name, job.UID); err != nil {
			return 0, err
		}
		return 0, nil
	}
	raw, result := c.jobResult(op, name)
	switch {
	case jobCondition(job, "Complete") != nil && result != nil && result.Warning != "":
		if addToOutcome(op, "node root recovered: "+result.Warning) {
			c.event(op, eventNormal, "NodeRootRecovered", "%s", result.Warning)
		}
	case jobCondition(job, "Complete") != nil:
		if addToOutcome(op, "node root checked") {
			c.event(op, eventNormal, "NodeRootChecked", "the node root needed no recovery")
		}
	default:
		if addToOutcome(op, fmt.Sprintf("recovery Job %s failed: the node's data may be inconsistent", name)) {
			c.event(op, eventWarning, "RecoveryFailed", "recovery Job %s failed (%s): the node's data may be inconsistent; starting the node anyway", name, raw)
		}
	}
	return 0, nil
}

// addToOutcome appends a note to the outcome, which becomes the final
// message, once; it reports whether the note is new.
func addToOutcome(op *operation, note string) bool {
	cond := meta.FindStatusCondition(op.status.Conditions, citav1.ConditionSucceeded)
	if cond == nil || strings.Contains(cond.Message, note) {
		return false
	}
	cond.Message += "; " + note
	return true
}

// orphanRecoveryPoll is how often an orphan's recovery Job is looked at: it
// belongs to the workload, whose events do not wake the orphan's key.
const orphanRecoveryPoll = 2 * time.Second

// recoverOrphan: before a node stopped by an operation that is gone (its
// finalizer was removed by hand) is started, a recovery Job puts back what
// a killed run of the operation's Job may have left half-rewritten, as
// recoverNodeRoot does for a live operation. Nothing records whether the
// Job finished cleanly any more, so it always runs for the kinds that
// rewrite the node root; on intact data it changes nothing. The Job belongs
// to the workload (the operation is gone) and its events go there. A
// positive duration: the Job runs, look again then.
func (c *Controller) recoverOrphan(ctx context.Context, namespace string, h nodeops.Holder, w *nodeops.Workload) (time.Duration, error) {
	target, recorded := nodeops.RecordedNode(w)
	k := c.kindByName[h.Kind]
	if _, stopped := nodeops.StoppedReplicas(w); !stopped || w.Replicas != 0 || k == nil || !k.writesNodeRoot || !recorded {
		return 0, nil
	}
	obj, ok := w.Object.(runtime.Object)
	if !ok {
		return 0, nil
	}
	uid := string(h.UID)
	name := nodeops.JobName(h.Name, "recover-"+uid[:min(8, len(uid))])
	job, err := c.jobs.Jobs(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		node, err := nodeops.Locate(c.listers, target)
		if err != nil {
			c.deps.Recorder.Eventf(obj, eventWarning, "RecoveryImpossible", "%s held by %s, which is gone: cannot check the node root before starting it: %v", w.Key(), h, err)
			return 0, nil
		}
		gvk := appsv1.SchemeGroupVersion.WithKind(w.Kind)
		job := nodeops.Job(nodeops.JobRequest{
			Name: name, Namespace: namespace,
			Owner: metav1.OwnerReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: w.Name, UID: w.Object.GetUID(), BlockOwnerDeletion: ptr.To(false)},
			Image: c.cfg.JobImage, Pull: corev1.PullIfNotPresent,
			Args: jobargs.Args{Op: jobargs.OpRecover, NodeRoot: jobargs.NodeRootMountPath},
			Node: node, ActiveDeadlineSeconds: int64(c.cfg.JobActiveDeadline / time.Second),
		})
		// Nothing waits for its result once the node is started: it may go.
		job.Spec.TTLSecondsAfterFinished = ptr.To[int32](600)
		if _, err := c.deps.Kube.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{}); refused(err) {
			c.deps.Recorder.Eventf(obj, eventWarning, "RecoveryImpossible", "%s held by %s, which is gone: recovery Job %s refused (%v); starting the node without checking its node root", w.Key(), h, name, err)
			return 0, nil
		} else if err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, err
		}
		c.deps.Recorder.Eventf(obj, eventNormal, "RecoveryJobCreated", "%s was stopped by %s, which is gone: Job %s puts back what its Job may have left before the node starts", w.Key(), h, name)
		return orphanRecoveryPoll, nil
	}
	if err != nil {
		return 0, err
	}
	if !jobFinished(job) {
		why, after := c.jobCannotStart(job)
		if why == "" || after > 0 {
			return orphanRecoveryPoll, nil // no event of its Job wakes the orphan
		}
		c.deps.Recorder.Eventf(obj, eventWarning, "RecoveryFailed", "recovery Job %s could not start: %s; starting the node anyway", name, why)
		return 0, c.deleteJob(ctx, namespace, job.Name, job.UID)
	}
	if jobCondition(job, "Complete") != nil {
		c.deps.Recorder.Eventf(obj, eventNormal, "NodeRootChecked", "recovery Job %s finished: the node root is whole", name)
	} else {
		c.deps.Recorder.Eventf(obj, eventWarning, "RecoveryFailed", "recovery Job %s failed: the node's data may be inconsistent; starting the node anyway", name)
	}
	return 0, nil
}
