package operations

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// Reasons of the NodeReady condition (NodeNotReady is also the failure's).
const (
	ReasonAwaitingReady = "AwaitingReady"
	ReasonNodeReady     = "NodeReady"
	ReasonNodeNotReady  = "NodeNotReady"
	ReasonTakenOver     = "TakenOver"
)

// A node that was started is not done until it is seen running: after a
// successful operation started its nodes, the operation stays Active in step
// Starting until every pod of each started workload is Ready, for at most
// StartReadyTimeout. The lock is released at the start, so operations
// queued on the node do not wait for this; nor does a deleted CR.
//
// The wait is derived from the status alone, so it survives a restart: the
// NodeReady condition is Unknown while it lasts, and its transition time
// is when it began. The workloads awaited are those status.nodes recorded
// at the stop.

// awaitReady decides the NodeReady condition once the nodes are started.
// It returns how long to wait before looking again (0: decided, or nothing
// to await); a timeout turns the outcome into a NodeNotReady failure that
// keeps the work's own result in its message.
func (c *Controller) awaitReady(op *operation) time.Duration {
	succeeded := meta.FindStatusCondition(op.status.Conditions, citav1.ConditionSucceeded)
	keys := stoppedWorkloads(op.status)
	if op.obj.GetDeletionTimestamp() != nil || succeeded == nil || succeeded.Status != metav1.ConditionTrue || len(keys) == 0 {
		return 0
	}
	timeout := c.cfg.StartReadyTimeout
	cond := meta.FindStatusCondition(op.status.Conditions, citav1.ConditionNodeReady)
	if cond == nil {
		c.setCondition(op, citav1.ConditionNodeReady, metav1.ConditionUnknown, ReasonAwaitingReady, "waiting up to %s for the pods of %s to be Ready", timeout, strings.Join(keys, ", "))
		op.setStep(citav1.StepStarting, "%s; waiting up to %s for %s to be Ready", startedNote(op), timeout, strings.Join(keys, ", "))
		return timeout
	}
	if cond.Status != metav1.ConditionUnknown {
		return 0
	}
	var notReady []string
	for _, key := range keys {
		w, err := c.cachedWorkload(op.obj.GetNamespace(), key)
		switch {
		case apierrors.IsNotFound(err):
			c.nodeNotReady(op, succeeded.Message, "%s was deleted before its pods were Ready", key)
			return 0
		case err != nil:
			notReady = append(notReady, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		if h, held := nodeops.Held(w.Object); held && h.UID != op.obj.GetUID() {
			// An operation queued on the node took it, as the user asked:
			// the work is done, the node is that operation's now.
			c.setCondition(op, citav1.ConditionNodeReady, metav1.ConditionUnknown, ReasonTakenOver, "%s took %s before its pods were seen Ready", h.Kind+"/"+h.Name, key)
			return 0
		}
		if why := c.workloadNotReady(op.obj.GetNamespace(), w, recordedReplicas(op.status, key)); why != "" {
			notReady = append(notReady, why)
		}
	}
	if len(notReady) == 0 {
		c.setCondition(op, citav1.ConditionNodeReady, metav1.ConditionTrue, ReasonNodeReady, "every pod of %s is Ready", strings.Join(keys, ", "))
		c.event(op, eventNormal, ReasonNodeReady, "every pod of %s is Ready", strings.Join(keys, ", "))
		return 0
	}
	left := cond.LastTransitionTime.Add(timeout).Sub(c.deps.Clock.Now())
	if left <= 0 {
		c.nodeNotReady(op, succeeded.Message, "%s", strings.Join(notReady, "; "))
		return 0
	}
	// Pod events bring the operation back sooner; this is the deadline.
	return left
}

// nodeNotReady ends the wait: the operation fails with NodeNotReady, its
// message keeping what the work itself achieved.
func (c *Controller) nodeNotReady(op *operation, workDone, format string, args ...any) {
	why := fmt.Sprintf(format, args...)
	c.setCondition(op, citav1.ConditionNodeReady, metav1.ConditionFalse, ReasonNodeNotReady, "%s", why)
	c.recordOutcome(op, failed(ReasonNodeNotReady, "%s; the node did not become Ready within %s: %s", workDone, c.cfg.StartReadyTimeout, why))
}

// awaitingReady: the operation has released its nodes and awaits their
// pods; for the lock queue it is finished with them.
func awaitingReady(st *citav1.OperationStatus) bool {
	return !ended(st) && meta.IsStatusConditionPresentAndEqual(st.Conditions, citav1.ConditionNodeReady, metav1.ConditionUnknown)
}

// stoppedWorkloads are the workloads the operation stopped that ran before
// (replicas recorded, not 0), in key order.
func stoppedWorkloads(st *citav1.OperationStatus) []string {
	var keys []string
	for _, n := range st.Nodes {
		if n.Replicas != nil && *n.Replicas > 0 && n.Workload != "" && !slices.Contains(keys, n.Workload) {
			keys = append(keys, n.Workload)
		}
	}
	sort.Strings(keys)
	return keys
}

// recordedReplicas is the replica count recorded for a workload at the stop.
func recordedReplicas(st *citav1.OperationStatus, key string) int32 {
	for _, n := range st.Nodes {
		if n.Workload == key && n.Replicas != nil {
			return *n.Replicas
		}
	}
	return 0
}

// cachedWorkload reads a workload by its key (Kind/name) from the cache.
func (c *Controller) cachedWorkload(namespace, key string) (*nodeops.Workload, error) {
	kind, name, _ := strings.Cut(key, "/")
	var w *nodeops.Workload
	switch kind {
	case "StatefulSet":
		sts, err := c.listers.StatefulSets.StatefulSets(namespace).Get(name)
		if err != nil {
			return nil, err
		}
		w = nodeops.StatefulSetWorkload(sts)
	case "Deployment":
		d, err := c.listers.Deployments.Deployments(namespace).Get(name)
		if err != nil {
			return nil, err
		}
		w = nodeops.DeploymentWorkload(d)
	default:
		return nil, fmt.Errorf("unknown workload kind in %q", key)
	}
	if w.Selector == nil {
		return nil, fmt.Errorf("%s has an invalid selector", key)
	}
	return w, nil
}

// workloadNotReady says why the workload's pods are not all Ready ("" when
// they are): as many Ready pods as it should have (its replicas, at least
// those recorded at the stop) and no other pod that is not Ready. The first
// pod not Ready is named with what holds it.
func (c *Controller) workloadNotReady(namespace string, w *nodeops.Workload, recorded int32) string {
	want := max(w.Replicas, recorded)
	pods, err := c.listers.Pods.Pods(namespace).List(w.Selector)
	if err != nil {
		return fmt.Sprintf("%s: %v", w.Key(), err)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	ready := int32(0)
	var first string
	for _, p := range pods {
		if p.DeletionTimestamp != nil || !ownedBy(p, w) {
			continue
		}
		if podReady(p) {
			ready++
		} else if first == "" {
			first = podNotReady(p)
		}
	}
	if ready >= want && first == "" {
		return ""
	}
	msg := fmt.Sprintf("%s has %d of %d pods Ready", w.Key(), ready, want)
	if w.Replicas < recorded {
		msg += fmt.Sprintf(" (scaled to %d since the start)", w.Replicas)
	}
	if first != "" {
		msg += ": " + first
	}
	return msg
}

// ownedBy: the pod is the workload's (a Deployment's through its
// ReplicaSet), not merely matched by its selector.
func ownedBy(p *corev1.Pod, w *nodeops.Workload) bool {
	return podWorkloadKey(p) == w.Key()
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podNotReady names what holds a pod back: a container waiting (with its
// reason: CrashLoopBackOff, ImagePullBackOff...), terminated or running
// unready, or the pod's own condition (Unschedulable...).
func podNotReady(p *corev1.Pod) string {
	statuses := append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if cs.Ready {
			continue
		}
		switch s := cs.State; {
		case s.Waiting != nil && s.Waiting.Reason != "" && s.Waiting.Reason != "PodInitializing":
			return fmt.Sprintf("pod %s: container %s %s%s (restarts: %d)", p.Name, cs.Name, s.Waiting.Reason, detail(s.Waiting.Message), cs.RestartCount)
		case s.Terminated != nil && !isInit(p, cs.Name):
			return fmt.Sprintf("pod %s: container %s terminated: %s, exit code %d (restarts: %d)", p.Name, cs.Name, s.Terminated.Reason, s.Terminated.ExitCode, cs.RestartCount)
		case s.Running != nil && !isInit(p, cs.Name):
			return fmt.Sprintf("pod %s: container %s is running but not Ready (restarts: %d)", p.Name, cs.Name, cs.RestartCount)
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Status == corev1.ConditionFalse && cond.Reason != "" {
			return fmt.Sprintf("pod %s is %s: %s%s", p.Name, orDefault(string(p.Status.Phase), "Pending"), cond.Reason, detail(cond.Message))
		}
	}
	return fmt.Sprintf("pod %s is %s, not Ready", p.Name, orDefault(string(p.Status.Phase), "Pending"))
}

func isInit(p *corev1.Pod, name string) bool {
	return slices.ContainsFunc(p.Status.InitContainerStatuses, func(cs corev1.ContainerStatus) bool { return cs.Name == name })
}

func detail(msg string) string {
	if msg == "" {
		return ""
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return ": " + msg
}

// startedNote is the Done message's account of the start: the workloads
// this sync started, or those an earlier sync did (kept in the NodeStopped
// condition).
func startedNote(op *operation) string {
	if len(op.started) > 0 {
		return "node started: " + strings.Join(op.started, ", ")
	}
	if cond := meta.FindStatusCondition(op.status.Conditions, citav1.ConditionNodeStopped); cond != nil && strings.HasPrefix(cond.Message, "node started: ") {
		return cond.Message
	}
	return ""
}
