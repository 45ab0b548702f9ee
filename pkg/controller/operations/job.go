package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// jobName is the operation's Job: one per operation, deterministic, so a
// restarted operator finds it instead of creating a second.
func (op *operation) jobName() string { return nodeops.JobName(op.obj.GetName(), op.kind.jobSuffix) }

// ownJob returns the operation's Job from the cache, or nil.
func (c *Controller) ownJob(op *operation) (*batchv1.Job, error) {
	if op.kind.job == nil { // the kind does its work itself
		return nil, nil
	}
	job, err := c.jobs.Jobs(op.obj.GetNamespace()).Get(op.jobName())
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !metav1.IsControlledBy(job, op.obj) {
		return nil, nil
	}
	return job, nil
}

func jobCondition(job *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range job.Status.Conditions {
		if job.Status.Conditions[i].Type == t && job.Status.Conditions[i].Status == corev1.ConditionTrue {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

func jobFinished(job *batchv1.Job) bool {
	return jobCondition(job, batchv1.JobComplete) != nil || jobCondition(job, batchv1.JobFailed) != nil
}

// run does the operation's work: the kind's own (Run), or its Job.
func (c *Controller) run(ctx context.Context, op *operation, nodes []*nodeops.Node) (step, error) {
	if op.status.Step != citav1.StepRunning {
		op.setStep(citav1.StepRunning, "running %s on node(s) %s", op.kind.name, nodeNames(nodes))
	}
	if run := op.kind.run; run != nil {
		done, err := run(ctx, op, nodes)
		if err == nil && done {
			return success("%s done", op.kind.name), nil
		}
		return step{}, err
	}

	name := op.jobName()
	key := op.obj.GetNamespace() + "/" + name
	job, err := c.jobs.Jobs(op.obj.GetNamespace()).Get(name)
	if apierrors.IsNotFound(err) {
		if c.createdJobs.pending(key, c.deps.Clock.Now()) {
			return wait(cacheLag), nil
		}
		return c.createJob(ctx, op, nodes)
	}
	if err != nil {
		return step{}, err
	}
	c.createdJobs.seen(key)
	if !metav1.IsControlledBy(job, op.obj) {
		return failure(ReasonInvalid, "a Job named %s exists and does not belong to this %s", name, op.kind.name), nil
	}
	if jobFinished(job) {
		return c.jobOutcome(op, job), nil
	}
	return c.checkJobStart(job), nil
}

func nodeNames(nodes []*nodeops.Node) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return strings.Join(names, ", ")
}

// jobImage is the image the Job runs: the spec's, except the original
// project's job image, which cannot work here and is replaced.
func (c *Controller) jobImage(op *operation) string {
	image := op.job.Image
	switch {
	case image == "":
		return c.cfg.JobImage
	case nodeops.IsOriginalJobImage(image):
		c.event(op, eventWarning, "JobImageReplaced", "image %s is the original cita-node-operator's job image, which stops and starts nodes itself and cannot run here: using %s", image, c.cfg.JobImage)
		return c.cfg.JobImage
	}
	return image
}

// refused: the apiserver turned a create down for good (admission, quota,
// an invalid object); retrying it would keep a stopped node down forever.
func refused(err error) bool {
	return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}

func (c *Controller) createJob(ctx context.Context, op *operation, nodes []*nodeops.Node) (step, error) {
	next, err := c.buildAndCreateJob(ctx, op, nodes)
	if err == nil {
		return next, nil
	}
	// The node may be stopped already: an error that persists (a source
	// Backup deleted meanwhile, a Job or PVC refused by admission or quota)
	// must end the operation, not retry it with the node down forever.
	var invalid *nodeops.InvalidError
	switch {
	case errors.As(err, &invalid):
		return failure(ReasonInvalid, "%s", invalid.Reason), nil
	case refused(err):
		return failure(ReasonJobCannotRun, "cannot create what the Job needs: %v", err), nil
	}
	if since := c.stoppedSince(op); !since.IsZero() && c.deps.Clock.Since(since) >= c.cfg.JobStartTimeout {
		return failure(ReasonJobCannotRun, "no Job could be created within %s of the stop: %v", c.cfg.JobStartTimeout, err), nil
	}
	return step{}, err
}

// stoppedSince is when the node was found stopped (or, for Direct, when the
// lock was taken); zero if unknown.
func (c *Controller) stoppedSince(op *operation) time.Time {
	for _, t := range []string{citav1.ConditionNodeStopped, citav1.ConditionNodeLocked} {
		if cond := meta.FindStatusCondition(op.status.Conditions, t); cond != nil && cond.Status == metav1.ConditionTrue {
			return cond.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

func (c *Controller) buildAndCreateJob(ctx context.Context, op *operation, nodes []*nodeops.Node) (step, error) {
	if prepare := op.kind.prepare; prepare != nil {
		if ready, err := prepare(ctx, op, nodes); err != nil || !ready {
			return step{}, err
		}
	}
	work, err := op.kind.job(op, nodes)
	if err != nil {
		return step{}, err
	}
	args := work.Args
	if err := args.Validate(); err != nil {
		return failure(ReasonInvalid, "cannot build the Job: %v", err), nil
	}
	var machine string
	if op.affinity {
		machine = c.recordedMachine(op, nodes[0])
	}
	image := c.jobImage(op)
	job := nodeops.Job(nodeops.JobRequest{
		Name:                  op.jobName(),
		Namespace:             op.obj.GetNamespace(),
		Owner:                 op.ownerRef(),
		Image:                 image,
		Pull:                  op.job.PullPolicy,
		Args:                  args,
		Node:                  nodes[0],
		BackupClaim:           work.Claim,
		BackupReadOnly:        work.ReadOnly,
		Machine:               machine,
		ActiveDeadlineSeconds: int64(c.cfg.JobActiveDeadline / time.Second),
	})
	if _, err := c.deps.Kube.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return step{}, err
	}
	c.createdJobs.record(job.Namespace+"/"+job.Name, c.deps.Clock.Now())
	op.status.Job = &citav1.JobRecord{Name: job.Name, Image: image}
	op.setStep(citav1.StepRunning, "node stopped; Job %s running %s on node %s (image %s)", job.Name, args.Op, nodes[0].Name, image)
	return wait(c.cfg.JobStartTimeout), nil
}

// recordedMachine is where the node ran before the stop: recorded on the
// workload (and in status), or, for Direct, where its pod runs now.
func (c *Controller) recordedMachine(op *operation, n *nodeops.Node) string {
	if m := nodeops.RecordedMachine(n.Workload); m != "" {
		return m
	}
	for _, r := range op.status.Nodes {
		if r.Name == n.Name && r.Machine != "" {
			return r.Machine
		}
	}
	m, _ := n.Machine(c.listers.Pods)
	return m
}

// jobOutcome reads the Job's result from its pod's termination message,
// records it in status before anything else happens to the Job, and
// returns the outcome it means.
func (c *Controller) jobOutcome(op *operation, job *batchv1.Job) step {
	raw, result := c.jobResult(op, job.Name)
	if op.status.Job == nil {
		op.status.Job = &citav1.JobRecord{Name: job.Name}
	}
	if len(job.Spec.Template.Spec.Containers) > 0 {
		op.status.Job.Image = job.Spec.Template.Spec.Containers[0].Image
	}
	op.status.Job.Result = raw
	if result != nil && result.Warning != "" {
		c.event(op, eventWarning, "JobWarning", "%s", result.Warning)
	}
	if jobCondition(job, batchv1.JobComplete) != nil {
		if result != nil && op.kind.recordResult != nil {
			op.kind.recordResult(op, result)
		}
		return success("%s", successMessage(op, job, result))
	}
	cond := jobCondition(job, batchv1.JobFailed)
	reason := fmt.Sprintf("Job %s failed: %s", job.Name, cond.Message)
	if cond.Reason == batchv1.JobReasonDeadlineExceeded {
		reason = fmt.Sprintf("Job %s exceeded its deadline of %s", job.Name, time.Duration(ptr.Deref(job.Spec.ActiveDeadlineSeconds, 0))*time.Second)
	}
	if result != nil && result.Error != "" {
		reason = fmt.Sprintf("Job %s failed: %s", job.Name, result.Error)
	}
	return failure(ReasonJobFailed, "%s", reason)
}

func successMessage(op *operation, job *batchv1.Job, r *jobargs.Result) string {
	if r == nil {
		return fmt.Sprintf("Job %s succeeded", job.Name)
	}
	msg := fmt.Sprintf("Job %s succeeded in %.1fs", job.Name, r.Seconds)
	if r.Bytes > 0 {
		msg += fmt.Sprintf(": %d bytes, %d files", r.Bytes, r.Files)
	}
	if r.Verified != nil && !*r.Verified {
		msg += " (restored unverified: the source has no checksum manifest)"
	}
	if r.RolledBack != nil && !*r.RolledBack && r.HeightBefore != nil {
		msg += fmt.Sprintf(": the node was already at height %d, nothing was rolled back", *r.HeightBefore)
	}
	return msg
}

// jobResult finds the termination message of the named Job's container.
func (c *Controller) jobResult(op *operation, jobName string) (string, *jobargs.Result) {
	for _, p := range c.jobPods(string(op.obj.GetUID())) {
		if ref := metav1.GetControllerOf(p); ref == nil || ref.Kind != "Job" || ref.Name != jobName {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated == nil || cs.State.Terminated.Message == "" {
				continue
			}
			raw := strings.TrimSpace(cs.State.Terminated.Message)
			r, err := jobargs.DecodeResult([]byte(raw))
			if err != nil {
				return raw, nil
			}
			return raw, &r
		}
	}
	return "", nil
}

// podCannotStart are waiting reasons a Job pod does not recover from by
// itself within any useful time.
var podCannotStart = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
}

// checkJobStart fails the operation when the Job's pod has been unable to
// start for JobStartTimeout, so a bad image never keeps a node down.
func (c *Controller) checkJobStart(job *batchv1.Job) step {
	why, after := c.jobCannotStart(job)
	if why != "" && after == 0 {
		return failure(ReasonJobCannotRun, "Job %s could not start within %s: %s", job.Name, c.cfg.JobStartTimeout, why)
	}
	return wait(after)
}

// jobCannotStart says why the Job's pod has not started, if it has not,
// and how long it has left before JobStartTimeout (0: none). Any pod that
// has not started in that time counts, whatever holds it (an image that
// cannot be pulled, no machine to schedule it on, a volume that will not
// mount, no pod created at all): the node is down meanwhile.
func (c *Controller) jobCannotStart(job *batchv1.Job) (string, time.Duration) {
	var why, pending string
	pods := 0
	for _, p := range c.jobPods(job.Labels[nodeops.LabelOperationUID]) {
		if ref := metav1.GetControllerOf(p); ref == nil || ref.Name != job.Name {
			continue
		}
		pods++
		if p.Status.Phase != corev1.PodPending && p.Status.Phase != "" {
			return "", 0 // running or finished: it started
		}
		pending = fmt.Sprintf("pod %s is still %s", p.Name, orDefault(string(p.Status.Phase), "pending"))
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				why = fmt.Sprintf("pod %s is unschedulable: %s", p.Name, cond.Message)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running != nil || cs.State.Terminated != nil {
				return "", 0
			}
			if w := cs.State.Waiting; w != nil {
				if podCannotStart[w.Reason] || why == "" {
					why = fmt.Sprintf("pod %s cannot start: %s: %s", p.Name, w.Reason, w.Message)
				}
			}
		}
	}
	switch {
	case why != "":
	case pods == 0:
		why = "the Job has created no pod"
	default:
		why = pending
	}
	elapsed := c.deps.Clock.Since(job.CreationTimestamp.Time)
	if elapsed >= c.cfg.JobStartTimeout {
		return why, 0
	}
	return why, c.cfg.JobStartTimeout - elapsed
}

// stopJob makes sure no pod of the operation's Job is running before its
// node is started: an unfinished Job is deleted and its pods awaited.
func (c *Controller) stopJob(ctx context.Context, op *operation) (time.Duration, error) {
	// Only the operation's own Job: the recovery Job's pods are
	// recoverNodeRoot's to wait for, never to kill.
	var active []*corev1.Pod
	for _, p := range c.activeJobPods(string(op.obj.GetUID())) {
		if ref := metav1.GetControllerOf(p); ref == nil || ref.Name != op.jobName() {
			continue
		}
		active = append(active, p)
	}
	job, err := c.ownJob(op)
	if err != nil {
		return 0, err
	}
	if job != nil && !jobFinished(job) && job.DeletionTimestamp == nil {
		if err := c.deleteJob(ctx, job.Namespace, job.Name, job.UID); err != nil {
			return 0, err
		}
		c.event(op, eventNormal, "JobDeleted", "deleted unfinished Job %s before starting the node", job.Name)
		return time.Second, nil
	}
	if len(active) > 0 {
		if job == nil || job.DeletionTimestamp != nil {
			// The Job is gone; its pods may not be yet.
			for _, p := range active {
				if p.DeletionTimestamp == nil {
					err := c.deps.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
					if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
						return 0, err
					}
				}
			}
		}
		op.setStep(citav1.StepStarting, "waiting for Job pod %s to stop before starting the node", active[0].Name)
		return 2 * time.Second, nil
	}
	if job != nil && job.DeletionTimestamp != nil {
		// Deleted in the foreground: the Job goes only after its pods, so
		// a pod the cache has not seen yet cannot outlive it.
		op.setStep(citav1.StepStarting, "waiting for Job %s to be deleted before starting the node", job.Name)
		return 2 * time.Second, nil
	}
	return 0, nil
}

// setJobTTL lets the operation's Jobs expire now that their results are in
// the status.
func (c *Controller) setJobTTL(ctx context.Context, op *operation) error {
	for _, name := range []string{op.jobName(), op.recoveryJobName()} {
		if err := c.setTTL(ctx, op, name); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) setTTL(ctx context.Context, op *operation, name string) error {
	job, err := c.jobs.Jobs(op.obj.GetNamespace()).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && !metav1.IsControlledBy(job, op.obj)) {
		return nil
	}
	if err != nil || job.Spec.TTLSecondsAfterFinished != nil || !jobFinished(job) {
		return err
	}
	if c.written.behind(job) {
		// Set by this controller; the cache has not shown it yet.
		return nil
	}
	ttl := ptr.Deref(op.job.TTLSecondsAfterFinished, 30)
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"ttlSecondsAfterFinished": ttl}})
	if err != nil {
		return err
	}
	patched, err := c.deps.Kube.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		c.written.record(patched.UID, patched.ResourceVersion)
	}
	return err
}
