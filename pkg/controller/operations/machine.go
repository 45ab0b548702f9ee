package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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

// step is what one step of the machine decided: proceed to the next step in
// this sync, stop here until an event or for a while (after), or end the
// operation with an outcome. The zero step waits for the next event.
type step struct {
	proceed bool
	after   time.Duration
	outcome *outcome
}

// outcome is how an operation ends: Complete, or Failed with a reason.
type outcome struct {
	succeeded bool
	reason    string // a failure's, for the Succeeded condition and its event
	message   string
}

var proceed = step{proceed: true}

// wait stops the sync here; it looks again after d even without an event
// (0: only on an event).
func wait(d time.Duration) step { return step{after: d} }

func success(format string, args ...any) step {
	return step{outcome: &outcome{succeeded: true, message: fmt.Sprintf(format, args...)}}
}

func failure(reason, format string, args ...any) step {
	o := failed(reason, format, args...)
	return step{outcome: &o}
}

func failed(reason, format string, args ...any) outcome {
	return outcome{reason: reason, message: fmt.Sprintf(format, args...)}
}

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

// advance runs the machine. Every sync of an operation runs it: it derives where
// the operation is from its status and the cluster, runs the steps from
// there, and stops at the first that does not proceed. A step returns what
// it decided (a step value): proceed, wait (until an event, or for a while),
// or an outcome. settle is the one place an outcome is acted on.
//
//	step           proceeds when                  can end it with (reason)              nodes then
//	validate       the nodes and what the CR      InvalidInput                          untouched: ends at once
//	               references are as required
//	lock           it holds every workload        -                                     (waits in Waiting; an
//	               (in queue order)                                                     orphaned lock is released)
//	stop           no pod of the nodes is left    ScaledByOther, StopTimeout;           started again by startAndEnd
//	               (Direct: the kind may run on   NodeRunning (Direct, node running)
//	               a live node, or it is stopped)
//	run            never: it ends the operation   Succeeded; JobFailed, JobCannotStart, started again by startAndEnd
//	               when the work is done          InvalidInput (Job not ours, source
//	                                              gone after the stop)
//	any (lock lost while held)                    LockLost                              left as they are now
//	CR deleted before the end                     Deleted                               started again by startAndEnd
//	awaitReady     every pod of the started       NodeNotReady (not Ready in time,      left started
//	               workloads is Ready             workload deleted)
//
// Once an outcome is recorded (the Succeeded condition) only startAndEnd runs:
// it stops the operation's Job and waits for its pods, runs a recovery Job
// where the kind's Job may have been killed while rewriting the node root,
// lets the kind put right what a failure left (BeforeStart), starts and
// releases every workload the operation holds, and sets Complete or Failed
// with the step Done. The outcome is written before the nodes are started
// (see settle), so no crash loses it or runs the work twice. A successful
// operation that started its nodes ends only once their pods are Ready
// (awaitReady, ready.go): meanwhile it stays in Starting with NodeReady
// Unknown; not Ready within StartReadyTimeout, its outcome becomes a
// NodeNotReady failure. After that,
// afterEnd lets the Job expire (its result is in status) and removes the
// finalizer.
//
// advance changes op's status in memory only; every other write is made
// here, one step at a time. A positive duration asks to be called again
// after it even if nothing changes.
func (c *Controller) advance(ctx context.Context, op *operation) (time.Duration, error) {
	st := op.status
	if op.obj.GetDeletionTimestamp() != nil {
		return c.onDeleted(ctx, op)
	}
	if ended(st) {
		return 0, c.afterEnd(ctx, op)
	}
	if !slices.Contains(op.obj.GetFinalizers(), Finalizer) {
		return 0, c.patchFinalizers(ctx, op, append(slices.Clone(op.obj.GetFinalizers()), Finalizer))
	}
	if st.Status == "" {
		st.Status = citav1.PhaseActive
		st.StartTime = ptrTime(c.deps.Clock.Now())
		op.setStep(citav1.StepValidating, "validating")
	}
	st.ObservedGeneration = op.obj.GetGeneration()

	if hasOutcome(st) {
		return c.startAndEnd(ctx, op)
	}
	next, err := c.decide(ctx, op)
	if err != nil {
		return 0, err
	}
	if next.outcome != nil {
		return c.settle(ctx, op, *next.outcome)
	}
	return next.after, nil
}

// decide runs the steps up to the first that does not proceed.
func (c *Controller) decide(ctx context.Context, op *operation) (step, error) {
	// A Job that already finished is the outcome, whatever else happened
	// since (an operator that crashed after starting the node, before
	// recording it): the node is never stopped a second time for it.
	if job, err := c.ownJob(op); err != nil {
		return step{}, err
	} else if job != nil && jobFinished(job) && !c.holdsAny(op) {
		return c.jobOutcome(op, job), nil
	}

	nodes, err := c.locate(op)
	if err == nil && !c.holdsAny(op) {
		err = c.validate(ctx, op, nodes)
	}
	var invalid *nodeops.InvalidError
	if errors.As(err, &invalid) {
		return failure(ReasonInvalid, "%s", invalid.Reason), nil
	}
	if err != nil {
		return step{}, err
	}
	if c.workloadsBehind(workloadsOf(nodes)) {
		return wait(cacheLag), nil
	}
	if meta.IsStatusConditionTrue(op.status.Conditions, citav1.ConditionNodeLocked) && !c.holdsAny(op) {
		// The lock (and the recorded replicas) vanished from the workload
		// while the operation held it: it was replaced or edited. Taking it
		// again would record its current replicas and stop it a second time.
		return failure(ReasonLockLost, "the lock on the node's workload is gone (the workload was replaced or its annotations removed while the operation ran): aborted, the workload left as it is now"), nil
	}
	for _, s := range []func(context.Context, *operation, []*nodeops.Node) (step, error){c.lockNodes, c.stopNodes, c.run} {
		if next, err := s(ctx, op, nodes); err != nil || !next.proceed {
			return next, err
		}
	}
	return step{}, nil
}

// hasOutcome: the outcome (the Succeeded condition) is recorded.
func hasOutcome(st *citav1.OperationStatus) bool {
	return meta.FindStatusCondition(st.Conditions, citav1.ConditionSucceeded) != nil
}

// ended: Complete or Failed.
func ended(st *citav1.OperationStatus) bool {
	return st.Status == citav1.PhaseComplete || st.Status == citav1.PhaseFailed
}

// settle is the one place an outcome is acted on: it is recorded (the
// Succeeded condition, the message, a Warning event for a failure); if the
// operation touched nothing it ends now; otherwise the outcome is written
// first and the nodes are started on the next sync, so a crash in between
// can neither lose the outcome nor run the operation a second time.
//
// One case needs no separate write: the outcome read from a finished Job of
// the operation's own. Until its TTL is set (after the outcome is written)
// that Job is itself a durable record of the outcome, which a restarted
// operator reads again (see decide), so the node is started and the
// outcome written together.
func (c *Controller) settle(ctx context.Context, op *operation, o outcome) (time.Duration, error) {
	c.recordOutcome(op, o)
	if !c.holdsAny(op) && len(c.activeJobPods(string(op.obj.GetUID()))) == 0 {
		return c.startAndEnd(ctx, op)
	}
	if job, err := c.ownJob(op); err == nil && job != nil && jobFinished(job) {
		return c.startAndEnd(ctx, op)
	}
	op.setStep(citav1.StepStarting, "%s", o.message)
	return 0, nil
}

// recordOutcome sets the outcome in status.
func (c *Controller) recordOutcome(op *operation, o outcome) {
	if o.succeeded {
		c.setCondition(op, citav1.ConditionSucceeded, metav1.ConditionTrue, ReasonSucceeded, "%s", o.message)
		return
	}
	c.setCondition(op, citav1.ConditionSucceeded, metav1.ConditionFalse, o.reason, "%s", o.message)
	op.status.Message = o.message
	c.event(op, eventWarning, o.reason, "%s", o.message)
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
	if why := c.directRefused(op, nodes); why != "" {
		return &nodeops.InvalidError{Reason: why}
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
			if _, err := c.deps.Kube.CoreV1().Nodes().Get(ctx, machine, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return &nodeops.InvalidError{Reason: fmt.Sprintf("podAffinityFlag is set but the machine %s that node %s ran on is gone", machine, n.Name)}
			} else if err != nil {
				return err
			}
		}
	}
	return nil
}

// directRefused says why an operation with action Direct cannot run now: its
// kind needs the node stopped and a pod of it exists. "" if it can.
func (c *Controller) directRefused(op *operation, nodes []*nodeops.Node) string {
	if op.stopsNode() || !op.kind.directNeedsStoppedNode {
		return ""
	}
	for _, n := range nodes {
		pods, err := n.Pods(c.listers.Pods)
		if err == nil && len(pods) > 0 {
			return fmt.Sprintf("action Direct needs the node stopped, but its pod %s exists: stop it first or use StopAndStart", pods[0].Name)
		}
	}
	return ""
}

// startAndEnd: make sure no Job pod still runs, start and release every node
// the operation holds, then end the operation with its recorded outcome.
func (c *Controller) startAndEnd(ctx context.Context, op *operation) (time.Duration, error) {
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
		started := "node(s) started"
		if len(op.started) > 0 {
			started = startedNote(op)
		}
		c.setCondition(op, citav1.ConditionNodeStopped, metav1.ConditionFalse, "Started", "%s", started)
		c.setCondition(op, citav1.ConditionNodeLocked, metav1.ConditionFalse, "Released", "node(s) released")
	}
	if wait := c.awaitReady(op); wait > 0 {
		return wait, nil
	}
	cond := meta.FindStatusCondition(op.status.Conditions, citav1.ConditionSucceeded)
	st := op.status
	st.EndTime = ptrTime(c.deps.Clock.Now())
	st.Status = citav1.PhaseFailed
	if cond.Status == metav1.ConditionTrue {
		st.Status = citav1.PhaseComplete
	}
	msg := cond.Message
	if started := startedNote(op); started != "" {
		msg += "; " + started
	}
	if ready := meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady); ready != nil && ready.Status != metav1.ConditionFalse {
		msg += "; " + ready.Message
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

// afterEnd: the result is recorded, so the Job may now expire; then the
// finalizer goes.
func (c *Controller) afterEnd(ctx context.Context, op *operation) error {
	if err := c.setJobTTL(ctx, op); err != nil {
		return err
	}
	if len(c.heldWorkloads(op)) > 0 {
		// Cannot happen through this machine (release precedes the outcome);
		// repair rather than leave a node locked.
		_, err := c.startAndEnd(ctx, op)
		return err
	}
	return c.removeFinalizer(ctx, op)
}

// onDeleted handles a deleted CR: its Job is stopped, its nodes started and
// released, then the finalizer is removed.
func (c *Controller) onDeleted(ctx context.Context, op *operation) (time.Duration, error) {
	if !slices.Contains(op.obj.GetFinalizers(), Finalizer) {
		return 0, nil
	}
	if !ended(op.status) {
		// The outcome is written first; the finalizer goes on the next sync,
		// as removing it may delete the object.
		if !hasOutcome(op.status) {
			c.recordOutcome(op, failed(ReasonDeleted, "the %s was deleted before it finished", op.kind.name))
		}
		return c.startAndEnd(ctx, op)
	}
	if len(c.heldWorkloads(op)) > 0 {
		return c.startAndEnd(ctx, op)
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
	rv, err := nodeops.PatchWorkload(ctx, c.deps.Kube, w, namespace, patch)
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
