package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// nodeRootWriter is implemented by kinds whose Job rewrites the node root in
// place (fallback, restore). The job binary puts the data back itself when
// it fails or is asked to stop; when it is killed outright (OOM kill, a lost
// machine) the node root may be half-rewritten, so before such a node is
// started again a recovery Job puts back what the killed run left.
type nodeRootWriter interface {
	writesNodeRoot()
}

func (op *operation) recoveryJobName() string { return nodeops.JobName(op.obj.GetName(), "recover") }

// needsRecovery: the operation failed after its Job may have started
// rewriting the node root, and the Job did not report a failure it handled.
func needsRecovery(op *operation) bool {
	if _, ok := op.work.(nodeRootWriter); !ok || op.status.Job == nil {
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
		if _, err := c.kube.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
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
		why, after := c.jobCannotStart(op, job)
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
