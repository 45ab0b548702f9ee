package operations

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// recordStop notes in status what the stop recorded on the workload.
func (c *Controller) recordStop(op *operation, n *nodeops.Node, machine string) {
	rec := citav1.NodeRecord{Name: n.Name, Workload: n.Workload.Key(), Replicas: ptr.To(n.Workload.Replicas), Machine: machine}
	i := slices.IndexFunc(op.status.Nodes, func(r citav1.NodeRecord) bool { return r.Name == n.Name })
	if i < 0 {
		op.status.Nodes = append(op.status.Nodes, rec)
	} else {
		op.status.Nodes[i] = rec
	}
	c.setCondition(op, citav1.ConditionNodeStopped, metav1.ConditionFalse, "Stopping", "%s scaled from %d to 0", n.Workload.Key(), n.Workload.Replicas)
	op.setStep(citav1.StepStopping, "stopping node %s (%s, %d replicas recorded)", n.Name, n.Workload.Key(), n.Workload.Replicas)
}

// stopNodes scales every node of the operation to 0 and waits until their
// pods are gone (a terminating pod may still write to the volume). Pods left
// behind after the grace period are deleted; at the stop timeout the
// operation fails (and end starts the nodes again). With action Direct
// nothing is stopped: the kinds that need a stopped node check it is.
func (c *Controller) stopNodes(ctx context.Context, op *operation, nodes []*nodeops.Node) (step, error) {
	if !op.stopsNode() {
		if why := c.directRefused(op, nodes); why != "" {
			return failure(ReasonNodeRunning, "%s", why), nil
		}
		return proceed, nil
	}
	// stoppedNow: the nodes this sync scaled to 0, which the cache does not
	// show yet. Every node is stopped in the same sync (one status write).
	var stoppedNow []string
	for _, n := range nodes {
		w := n.Workload
		if _, stopped := nodeops.StoppedReplicas(w); !stopped {
			machine, err := n.Machine(c.listers.Pods)
			if err != nil {
				return step{}, err
			}
			req := nodeops.LockRequest{Holder: op.holder(), Stop: true, Machine: machine}
			if err := c.patchWorkload(ctx, n.Namespace, w, nodeops.LockPatch(w, req)); err != nil {
				return step{}, err
			}
			c.recordStop(op, n, machine)
			stoppedNow = append(stoppedNow, n.Name)
			continue
		}
		if w.Replicas != 0 {
			return failure(ReasonScaledByOther, "%s was scaled to %d by someone else while stopped for this operation: aborted, replicas left as they set them", w.Key(), w.Replicas), nil
		}
	}
	if len(stoppedNow) > 1 {
		names := strings.Join(stoppedNow, ", ")
		c.setCondition(op, citav1.ConditionNodeStopped, metav1.ConditionFalse, "Stopping", "nodes %s scaled to 0", names)
		op.setStep(citav1.StepStopping, "stopping nodes %s (replicas recorded)", names)
	}
	if len(stoppedNow) > 0 {
		return step{}, nil
	}

	// left: the nodes' pods still there; behind: those of them whose
	// workload's controller has seen the stop and not removed them; late:
	// the first workload whose controller has not acted on the stop yet.
	var left, behind []*corev1.Pod
	var late *nodeops.Workload
	for _, n := range nodes {
		pods, err := n.Pods(c.listers.Pods)
		if err != nil {
			return step{}, err
		}
		left = append(left, pods...)
		if n.Workload.ControllerSawSpec() {
			behind = append(behind, pods...)
		} else if late == nil {
			late = n.Workload
		}
	}
	if len(left) == 0 {
		if !meta.IsStatusConditionTrue(op.status.Conditions, citav1.ConditionNodeStopped) {
			c.setCondition(op, citav1.ConditionNodeStopped, metav1.ConditionTrue, "Stopped", "no pod of the node(s) exists")
		}
		return proceed, nil
	}

	since := op.status.StartTime.Time
	if cond := meta.FindStatusCondition(op.status.Conditions, citav1.ConditionNodeStopped); cond != nil {
		since = cond.LastTransitionTime.Time
	}
	elapsed := c.deps.Clock.Since(since)
	if elapsed >= c.cfg.StopTimeout {
		why := ""
		if late != nil {
			why = fmt.Sprintf(" (the %s controller never acted on the stop: %s is at generation %d, its status at %d)", late.Kind, late.Key(), late.Object.GetGeneration(), late.Observed)
		}
		return failure(ReasonStopTimeout, "pod %s of the node was still there %s after the node was scaled to 0%s", left[0].Name, c.cfg.StopTimeout, why), nil
	}
	// Pods are left behind when the workload's controller has acted on the
	// stop and still not removed them (a StatefulSet with OrderedReady
	// does not scale down past an unhealthy pod). One that has not acted
	// on it yet is only late, the control plane under load (in the N=500
	// bench the StatefulSet controller reached some stops after more than
	// a minute): deleting the pods it is about to delete would be a write
	// and a Warning for nothing.
	if elapsed >= c.cfg.StopGracePeriod {
		for _, p := range behind {
			if p.DeletionTimestamp != nil {
				continue
			}
			// The pod cache may be behind the controller's own delete
			// (under load, behind the workload's status that says it
			// acted): ask the apiserver before deleting.
			live, err := c.deps.Kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && (live.UID != p.UID || live.DeletionTimestamp != nil)) {
				continue
			}
			if err != nil {
				return step{}, err
			}
			err = c.deps.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return step{}, err
			}
			c.event(op, eventWarning, "PodDeleted", "pod %s was still there %s after its node was scaled to 0: deleted it", p.Name, elapsed.Round(time.Second))
		}
		return wait(c.cfg.StopTimeout - elapsed), nil
	}
	return wait(c.cfg.StopGracePeriod - elapsed), nil
}
