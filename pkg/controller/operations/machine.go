package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// Finalizer keeps a CR until the node it stopped is started and its lock
// released, so deleting a CR mid-operation never leaves a node down.
const Finalizer = "citacloud.rivtower.com/start-node"

// Reasons of the Succeeded condition and of failure events.
const (
	ReasonSucceeded     = "Succeeded"
	ReasonInvalid       = "InvalidInput"
	ReasonJobFailed     = "JobFailed"
	ReasonJobCannotRun  = "JobCannotStart"
	ReasonStopTimeout   = "StopTimeout"
	ReasonScaledByOther = "ScaledByOther"
	ReasonLockLost      = "LockLost"
	ReasonNodeRunning   = "NodeRunning"
	ReasonDeleted       = "Deleted"
	ReasonWaiting       = "Waiting"
	ReasonHolding       = "Holding"
)

// syncOperation advances one operation as far as the cluster allows, then
// writes its status if it changed. Every step is derived from the cluster
// and the status, so an operator restarted at any point resumes.
func (c *Controller) syncOperation(ctx context.Context, k *kind, key cache.ObjectName) error {
	op, err := k.get(key)
	if apierrors.IsNotFound(err) {
		after, err := c.releaseOrphans(ctx, k.name, key)
		if after > 0 {
			k.queue.AddAfter(key, after)
		}
		return err
	}
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx).WithValues("kind", k.name, "operation", klog.KRef(key.Namespace, key.Name))
	ctx = klog.NewContext(ctx, logger)
	if c.written.behind(op.obj) {
		// The informer brings our last write shortly, with an event.
		k.queue.AddAfter(key, cacheLag)
		return nil
	}

	orig := op.obj.DeepCopyObject()
	prevStep, prevPhase := op.status.Step, op.status.Status
	after, stepErr := c.advance(ctx, op)

	// A conflict means a cache behind the cluster: what this sync derived
	// from it is not written (as if the operator had stopped here; the
	// cluster holds whatever was written before) and the sync is retried.
	if apierrors.IsConflict(stepErr) {
		return stepErr
	}
	if !apiequality.Semantic.DeepEqual(orig, op.obj) {
		rv, err := k.updateStatus(ctx, op)
		if err != nil {
			return errors.Join(stepErr, err)
		}
		c.written.record(op.obj.GetUID(), rv)
		c.observe(op, prevPhase)
		if op.status.Step != prevStep {
			eventType := eventNormal
			if op.status.Status == citav1.PhaseFailed {
				eventType = eventWarning
			}
			c.event(op, eventType, string(op.status.Step), "%s", op.status.Message)
		}
	}
	if stepErr != nil {
		return stepErr
	}
	if after > 0 {
		k.queue.AddAfter(key, after)
	}
	return nil
}

// advance runs the machine. It changes op's status in memory only; every
// other write is made here, one step at a time. A positive duration asks to
// be called again after it even if nothing changes.
func (c *Controller) advance(ctx context.Context, op *operation) (time.Duration, error) {
	st := op.status
	if op.obj.GetDeletionTimestamp() != nil {
		return c.finalize(ctx, op)
	}
	if isFinished(st) {
		return 0, c.afterFinish(ctx, op)
	}
	if !slices.Contains(op.obj.GetFinalizers(), Finalizer) {
		return 0, c.patchFinalizers(ctx, op, append(slices.Clone(op.obj.GetFinalizers()), Finalizer))
	}
	if st.Status == "" {
		st.Status = citav1.PhaseActive
		st.StartTime = ptrTime(c.clock.Now())
		op.setStep(citav1.StepValidating, "validating")
	}
	st.ObservedGeneration = op.obj.GetGeneration()

	if isDecided(st) {
		return c.finish(ctx, op)
	}

	// A Job that already finished is the outcome, whatever else happened
	// since (an operator that crashed after starting the node, before
	// recording it): the node is never stopped a second time for it.
	if job, err := c.ownJob(op); err != nil {
		return 0, err
	} else if job != nil && jobFinished(job) && !c.holdsAny(op) {
		c.recordJobOutcome(op, job)
		return c.decided(ctx, op)
	}

	nodes, err := c.locate(op)
	if err == nil && !c.holdsAny(op) {
		err = c.validate(ctx, op, nodes)
	}
	var invalid *nodeops.InvalidError
	if errors.As(err, &invalid) {
		c.fail(op, ReasonInvalid, "%s", invalid.Reason)
		return c.decided(ctx, op)
	}
	if err != nil {
		return 0, err
	}
	if c.workloadsBehind(workloadsOf(nodes)) {
		return cacheLag, nil
	}
	if meta.IsStatusConditionTrue(st.Conditions, citav1.ConditionNodeLocked) && !c.holdsAny(op) {
		// The lock (and the recorded replicas) vanished from the workload
		// while the operation held it: it was replaced or edited. Taking it
		// again would record its current replicas and stop it a second time.
		c.fail(op, ReasonLockLost, "the lock on the node's workload is gone (the workload was replaced or its annotations removed while the operation ran): aborted, the workload left as it is now")
		return c.decided(ctx, op)
	}

	if ok, after, err := c.lockNodes(ctx, op, nodes); !ok || err != nil {
		return after, err
	}
	if op.stopsNode() {
		ok, after, err := c.stopNodes(ctx, op, nodes)
		if err != nil {
			return 0, err
		}
		if isDecided(st) {
			return c.decided(ctx, op)
		}
		if !ok {
			return after, nil
		}
	} else if op.kind.directNeedsStoppedNode {
		if running := c.runningPods(nodes); running != "" {
			c.fail(op, ReasonNodeRunning, "action Direct needs the node stopped, but its pod %s exists: stop it first or use StopAndStart", running)
			return c.decided(ctx, op)
		}
	}

	after, err := c.run(ctx, op, nodes)
	if err != nil {
		return 0, err
	}
	if isDecided(st) {
		return c.decided(ctx, op)
	}
	return after, nil
}

// isDecided: the outcome (Succeeded condition) is known.
func isDecided(st *citav1.OperationStatus) bool {
	return meta.FindStatusCondition(st.Conditions, citav1.ConditionSucceeded) != nil
}

// decided is called once the outcome is known. If the operation touched
// nothing it finishes now; otherwise the outcome is written first and the
// nodes are started on the next sync, so a crash in between can neither
// lose the outcome nor run the operation a second time.
//
// One case needs no separate write: the outcome read from a finished Job of
// the operation's own. Until its TTL is set (after the outcome is written)
// that Job is itself a durable record of the outcome, which a restarted
// operator reads again (see advance), so the node is started and the
// outcome written together.
func (c *Controller) decided(ctx context.Context, op *operation) (time.Duration, error) {
	if !c.holdsAny(op) && len(c.activeJobPods(string(op.obj.GetUID()))) == 0 {
		return c.finish(ctx, op)
	}
	if job, err := c.ownJob(op); err == nil && job != nil && jobFinished(job) {
		return c.finish(ctx, op)
	}
	op.setStep(citav1.StepStarting, "%s", meta.FindStatusCondition(op.status.Conditions, citav1.ConditionSucceeded).Message)
	return 0, nil
}

func isFinished(st *citav1.OperationStatus) bool {
	return st.Status == citav1.PhaseComplete || st.Status == citav1.PhaseFailed
}

// locate finds the operation's nodes in the cache.
func (c *Controller) locate(op *operation) ([]*nodeops.Node, error) {
	nodes := make([]*nodeops.Node, 0, len(op.targets))
	for _, t := range op.targets {
		n, err := nodeops.Locate(c.listers, t)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// validate is what is checked once, before the operation takes its nodes.
func (c *Controller) validate(ctx context.Context, op *operation, nodes []*nodeops.Node) error {
	for _, n := range nodes {
		if op.job.Image == "" && c.cfg.JobImage == "" {
			return &nodeops.InvalidError{Reason: "no job image: set spec.image or the operator's --job-image"}
		}
		if err := n.CheckConfig(c.listers); err != nil {
			return err
		}
	}
	if validate := op.kind.validate; validate != nil {
		if err := validate(ctx, op, nodes); err != nil {
			return err
		}
	}
	if !op.stopsNode() && op.kind.directNeedsStoppedNode {
		if running := c.runningPods(nodes); running != "" {
			return &nodeops.InvalidError{Reason: fmt.Sprintf("action Direct needs the node stopped, but its pod %s exists: stop it first or use StopAndStart", running)}
		}
	}
	if op.affinity {
		for _, n := range nodes {
			machine, err := n.Machine(c.listers.Pods)
			if err != nil {
				return err
			}
			if machine == "" {
				return &nodeops.InvalidError{Reason: fmt.Sprintf("podAffinityFlag is set but no pod of node %s is scheduled: there is no machine to place the Job on", n.Name)}
			}
			if _, err := c.kube.CoreV1().Nodes().Get(ctx, machine, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return &nodeops.InvalidError{Reason: fmt.Sprintf("podAffinityFlag is set but the machine %s that node %s ran on is gone", machine, n.Name)}
			} else if err != nil {
				return err
			}
		}
	}
	return nil
}

// runningPods names a pod of the nodes that exists, or returns "".
func (c *Controller) runningPods(nodes []*nodeops.Node) string {
	for _, n := range nodes {
		pods, err := n.Pods(c.listers.Pods)
		if err == nil && len(pods) > 0 {
			return pods[0].Name
		}
	}
	return ""
}

// fail records the failure; finish then starts the nodes and ends the
// operation.
func (c *Controller) fail(op *operation, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.setCondition(op, citav1.ConditionSucceeded, metav1.ConditionFalse, reason, "%s", msg)
	op.status.Message = msg
	c.event(op, eventWarning, reason, "%s", msg)
}

func (c *Controller) succeed(op *operation, format string, args ...any) {
	c.setCondition(op, citav1.ConditionSucceeded, metav1.ConditionTrue, ReasonSucceeded, format, args...)
}

// finish: make sure no Job pod still runs, start and release every node the
// operation holds, then record the outcome.
func (c *Controller) finish(ctx context.Context, op *operation) (time.Duration, error) {
	if wait, err := c.stopJob(ctx, op); err != nil || wait > 0 {
		return wait, err
	}
	if len(c.heldWorkloads(op)) > 0 {
		if wait, err := c.recoverNodeRoot(ctx, op); err != nil || wait > 0 {
			return wait, err
		}
	}
	held := c.heldWorkloads(op)
	if c.workloadsBehind(held) {
		return cacheLag, nil
	}
	if beforeStart := op.kind.beforeStart; beforeStart != nil && len(held) > 0 {
		if changed, err := beforeStart(ctx, op, held); err != nil || changed {
			return cacheLag, err
		}
	}
	if len(held) > 0 {
		op.setStep(citav1.StepStarting, "starting node(s)")
		for _, w := range held {
			if err := c.releaseWorkload(ctx, op, w); err != nil {
				return 0, err
			}
		}
		c.setCondition(op, citav1.ConditionNodeStopped, metav1.ConditionFalse, "Started", "node(s) started")
		c.setCondition(op, citav1.ConditionNodeLocked, metav1.ConditionFalse, "Released", "node(s) released")
	}
	cond := meta.FindStatusCondition(op.status.Conditions, citav1.ConditionSucceeded)
	st := op.status
	st.EndTime = ptrTime(c.clock.Now())
	st.Status = citav1.PhaseFailed
	if cond.Status == metav1.ConditionTrue {
		st.Status = citav1.PhaseComplete
	}
	msg := cond.Message
	if len(op.started) > 0 {
		msg += "; node started: " + strings.Join(op.started, ", ")
	}
	op.setStep(citav1.StepDone, "%s", msg)
	return 0, nil
}

// releaseWorkload starts the workload (if the operation stopped it and
// nobody scaled it since) and removes the lock.
func (c *Controller) releaseWorkload(ctx context.Context, op *operation, w *nodeops.Workload) error {
	replicas, stopped := nodeops.StoppedReplicas(w)
	if err := c.patchWorkload(ctx, op.obj.GetNamespace(), w, nodeops.ReleasePatch(w)); err != nil {
		return err
	}
	if stopped && w.Replicas == 0 {
		op.started = append(op.started, fmt.Sprintf("%s back to %d replicas", w.Key(), replicas))
	}
	return nil
}

// afterFinish: the result is recorded, so the Job may now expire; then the
// finalizer goes.
func (c *Controller) afterFinish(ctx context.Context, op *operation) error {
	if err := c.setJobTTL(ctx, op); err != nil {
		return err
	}
	if len(c.heldWorkloads(op)) > 0 {
		// Cannot happen through this machine (release precedes the outcome);
		// repair rather than leave a node locked.
		_, err := c.finish(ctx, op)
		return err
	}
	return c.removeFinalizer(ctx, op)
}

// finalize handles a deleted CR: its Job is stopped, its nodes started and
// released, then the finalizer is removed.
func (c *Controller) finalize(ctx context.Context, op *operation) (time.Duration, error) {
	if !slices.Contains(op.obj.GetFinalizers(), Finalizer) {
		return 0, nil
	}
	if !isFinished(op.status) {
		// The outcome is written first; the finalizer goes on the next sync,
		// as removing it may delete the object.
		if !isDecided(op.status) {
			c.fail(op, ReasonDeleted, "the %s was deleted before it finished", op.kind.name)
		}
		return c.finish(ctx, op)
	}
	if len(c.heldWorkloads(op)) > 0 {
		return c.finish(ctx, op)
	}
	return 0, c.removeFinalizer(ctx, op)
}

func (c *Controller) removeFinalizer(ctx context.Context, op *operation) error {
	fins := op.obj.GetFinalizers()
	if !slices.Contains(fins, Finalizer) {
		return nil
	}
	kept := slices.DeleteFunc(slices.Clone(fins), func(f string) bool { return f == Finalizer })
	return c.patchFinalizers(ctx, op, kept)
}

// patchFinalizers replaces the finalizer list, guarded by resourceVersion
// so a finalizer someone else added meanwhile is never dropped.
func (c *Controller) patchFinalizers(ctx context.Context, op *operation, finalizers []string) error {
	if finalizers == nil {
		finalizers = []string{}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"finalizers":      finalizers,
		"resourceVersion": op.obj.GetResourceVersion(),
	}})
	if err != nil {
		return err
	}
	rv, err := op.kind.patch(ctx, op.obj.GetNamespace(), op.obj.GetName(), patch)
	if apierrors.IsNotFound(err) {
		return nil
	}
	c.written.record(op.obj.GetUID(), rv)
	return err
}

// cacheLag is how soon a sync is retried when the cache has not yet caught
// up with the controller's own last write.
const cacheLag = 50 * time.Millisecond

// patchWorkload sends a patch to a workload and remembers the version
// written, so that no later sync acts on a cache older than it.
func (c *Controller) patchWorkload(ctx context.Context, namespace string, w *nodeops.Workload, patch nodeops.Patch) error {
	rv, err := nodeops.PatchWorkload(ctx, c.kube, w, namespace, patch)
	if err == nil {
		c.written.record(w.Object.GetUID(), rv)
	} else if apierrors.IsConflict(err) {
		klog.FromContext(ctx).V(2).Info("Workload changed since the cache saw it", "workload", w.Key(), "cachedResourceVersion", w.Object.GetResourceVersion(), "patch", string(patch.Data), "err", err)
	}
	return err
}

// workloadsBehind reports whether the cache of any of the workloads has not
// yet seen the controller's last write to it.
func (c *Controller) workloadsBehind(ws []*nodeops.Workload) bool {
	for _, w := range ws {
		if c.written.behind(w.Object) {
			return true
		}
	}
	return false
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}
