package operations

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// The lock is on what stop and start scale (nodeops.WorkloadKey): for helm
// the chain's StatefulSet, so two operations on one helm chain run one after
// the other. Operations waiting for a workload get it in creation order,
// then by name; a Switchover takes its two workloads in key order, so no
// two operations can each hold what the other waits for.

// workloadsOf returns the operation's distinct workloads in key order.
func workloadsOf(nodes []*nodeops.Node) []*nodeops.Workload {
	seen := map[string]bool{}
	var out []*nodeops.Workload
	for _, n := range nodes {
		if !seen[n.Workload.Key()] {
			seen[n.Workload.Key()] = true
			out = append(out, n.Workload)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// lockNodes takes every workload of the operation, or says why it waits.
// An operation with one workload that stops its node takes the lock and
// stops the node in one write.
func (c *Controller) lockNodes(ctx context.Context, op *operation, nodes []*nodeops.Node) (step, error) {
	me := op.holder()
	workloads := workloadsOf(nodes)
	// lockedNow: the workloads this sync took, which the cache does not show
	// yet.
	var lockedNow []string
	for _, w := range workloads {
		if nodeops.HeldBy(w, me) {
			continue
		}
		if h, held := nodeops.HolderOf(w); held {
			if !c.holderAlive(op.obj.GetNamespace(), h) {
				// Its operation is gone without releasing it: start and
				// release it, then compete for it.
				after, err := c.releaseOrphan(ctx, op.obj.GetNamespace(), h, w)
				return wait(max(after, c.WaitRecheck())), err
			}
			c.wait(op, w, h.String())
			return wait(c.WaitRecheck()), nil
		}
		// Once it holds one of its workloads an operation takes the next
		// free one whatever the queue says: two Switchovers of one pair, each
		// holding one node and first in line for the other, would wait for
		// each other forever.
		if first := c.firstWaiter(op.obj.GetNamespace(), w.Key()); first != nil && first.GetUID() != op.obj.GetUID() && !holdsOneOf(workloads, me) && len(lockedNow) == 0 {
			c.wait(op, w, "")
			return wait(c.WaitRecheck()), nil
		}
		req := nodeops.LockRequest{Holder: me}
		if len(op.targets) == 1 {
			req.Node = &op.targets[0]
		}
		if len(workloads) == 1 && op.stopsNode() {
			req.Stop = true
			machine, err := nodes[0].Machine(c.listers.Pods)
			if err != nil {
				return step{}, err
			}
			req.Machine = machine
		}
		if op.kind.recordsAccounts {
			for _, n := range nodes {
				if n.Workload == w {
					req.Account = n.AccountConfigMap
				}
			}
		}
		if err := c.patchWorkload(ctx, op.obj.GetNamespace(), w, nodeops.LockPatch(w, req)); err != nil {
			return step{}, err
		}
		klog.FromContext(ctx).V(2).Info("Locked", "workload", w.Key(), "stop", req.Stop)
		lockedNow = append(lockedNow, w.Key())
		c.setCondition(op, citav1.ConditionNodeLocked, metav1.ConditionTrue, ReasonHolding, "holds %s", heldKeys(workloads, me, lockedNow))
		if req.Stop {
			c.recordStop(op, nodes[0], req.Machine)
		}
		// The next workload is taken in the same sync (one status write for
		// all); the cache shows the locks on the next event.
	}
	if len(lockedNow) > 0 {
		return step{}, nil
	}
	c.setCondition(op, citav1.ConditionNodeLocked, metav1.ConditionTrue, ReasonHolding, "holds %s", heldKeys(workloads, me, nil))
	return proceed, nil
}

// heldKeys names the workloads h holds, in the cache or taken just now.
func heldKeys(workloads []*nodeops.Workload, h nodeops.Holder, now []string) string {
	var keys []string
	for _, w := range workloads {
		if nodeops.HeldBy(w, h) || slices.Contains(now, w.Key()) {
			keys = append(keys, w.Key())
		}
	}
	return strings.Join(keys, ", ")
}

// WaitRecheck is how soon a waiting operation looks again without an event.
func (c *Controller) WaitRecheck() time.Duration { return c.cfg.WaitRecheck }

// wait records that the operation waits for w, naming the holder and its
// place in the queue.
func (c *Controller) wait(op *operation, w *nodeops.Workload, holder string) {
	pos := c.queuePosition(op, w)
	var msg string
	if holder != "" {
		msg = fmt.Sprintf("waiting for %s, held by %s; position %d in its queue", w.Key(), holder, pos)
	} else {
		msg = fmt.Sprintf("waiting for %s; position %d in its queue", w.Key(), pos)
	}
	c.setCondition(op, citav1.ConditionNodeLocked, metav1.ConditionFalse, ReasonWaiting, "%s", msg)
	op.setStep(citav1.StepWaiting, "%s", msg)
}

// waiters are the unfinished operations, not being deleted, that lock the
// workload, in the order they get it; holder, the one holding it, is left
// out, and so are those that released it and only await its pods' Ready.
func (c *Controller) waiters(namespace, workloadKey string, holder types.UID) []metav1.Object {
	var out []metav1.Object
	for _, k := range c.kinds {
		items, err := k.informer.GetIndexer().ByIndex(byWorkload, namespace+"/"+workloadKey)
		if err != nil {
			continue
		}
		for _, item := range items {
			o, ok := metaOf(item)
			if !ok || doneWithNodesInCache(k, item) || o.GetDeletionTimestamp() != nil || (holder != "" && o.GetUID() == holder) {
				continue
			}
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := out[i].GetCreationTimestamp(), out[j].GetCreationTimestamp()
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		if out[i].GetName() != out[j].GetName() {
			return out[i].GetName() < out[j].GetName()
		}
		return out[i].GetUID() < out[j].GetUID()
	})
	return out
}

func (c *Controller) firstWaiter(namespace, workloadKey string) metav1.Object {
	ws := c.waiters(namespace, workloadKey, "")
	if len(ws) == 0 {
		return nil
	}
	return ws[0]
}

// queuePosition is 1 for the operation that gets the workload next.
func (c *Controller) queuePosition(op *operation, w *nodeops.Workload) int {
	h, _ := nodeops.HolderOf(w)
	for i, o := range c.waiters(op.obj.GetNamespace(), w.Key(), h.UID) {
		if o.GetUID() == op.obj.GetUID() {
			return i + 1
		}
	}
	return 0
}

// holderAlive reports whether the operation named on a workload still
// exists and has not finished.
func (c *Controller) holderAlive(namespace string, h nodeops.Holder) bool {
	k := c.kindByName[h.Kind]
	if k == nil {
		return false
	}
	item, exists, err := k.informer.GetIndexer().GetByKey(namespace + "/" + h.Name)
	if err != nil || !exists {
		return false
	}
	o, ok := metaOf(item)
	return ok && o.GetUID() == h.UID && !endedInCache(k, item)
}

// holdsAny reports whether the operation holds any workload.
func (c *Controller) holdsAny(op *operation) bool { return len(c.heldWorkloads(op)) > 0 }

// heldWorkloads finds the workloads the operation holds through the holder
// index, not through its spec, so a node deleted mid-way is still released.
func (c *Controller) heldWorkloads(op *operation) []*nodeops.Workload {
	return c.workloadsHeldBy(op.obj.GetNamespace(), op.holder(), true)
}

func (c *Controller) workloadsHeldBy(namespace string, h nodeops.Holder, matchUID bool) []*nodeops.Workload {
	var out []*nodeops.Workload
	for _, idx := range c.workloadIndexes {
		items, err := idx.ByIndex(byHolder, namespace+"/"+h.String())
		if err != nil {
			continue
		}
		for _, item := range items {
			var w *nodeops.Workload
			switch o := item.(type) {
			case *appsv1.StatefulSet:
				w = nodeops.StatefulSetWorkload(o)
			case *appsv1.Deployment:
				w = nodeops.DeploymentWorkload(o)
			default:
				continue
			}
			if !matchUID || nodeops.HeldBy(w, h) {
				out = append(out, w)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// releaseOrphans is called for an operation that no longer exists: any
// workload still naming it is started and released once no pod of its Job
// runs (and its data is recovered, see recoverOrphan). A positive duration
// asks to be called again.
func (c *Controller) releaseOrphans(ctx context.Context, kindName string, key cache.ObjectName) (time.Duration, error) {
	var again time.Duration
	for _, w := range c.workloadsHeldBy(key.Namespace, nodeops.Holder{Kind: kindName, Name: key.Name}, false) {
		h, _ := nodeops.HolderOf(w)
		if c.holderAlive(key.Namespace, h) {
			continue
		}
		after, err := c.releaseOrphan(ctx, key.Namespace, h, w)
		if err != nil {
			return 0, err
		}
		if after > 0 && (again == 0 || after < again) {
			again = after
		}
	}
	return again, nil
}

// releaseOrphan starts and releases a workload held by an operation that is
// gone, after deleting what is left of its Job and recovering the node's
// data.
func (c *Controller) releaseOrphan(ctx context.Context, namespace string, h nodeops.Holder, w *nodeops.Workload) (time.Duration, error) {
	if running := c.activeJobPods(string(h.UID)); len(running) > 0 {
		for _, p := range running {
			if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "Job" {
				if err := c.deleteJob(ctx, namespace, ref.Name, ref.UID); err != nil {
					return 0, err
				}
			}
		}
		return 0, fmt.Errorf("%s is held by %s, which is gone; waiting for its Job pod %s to stop before starting it", w.Key(), h, running[0].Name)
	}
	if after, err := c.recoverOrphan(ctx, namespace, h, w); err != nil || after > 0 {
		return after, err
	}
	klog.FromContext(ctx).Info("Releasing a workload whose operation is gone", "workload", w.Key(), "holder", h.String())
	return 0, c.patchWorkload(ctx, namespace, w, nodeops.ReleasePatch(w))
}

// activeJobPods are the operation's Job pods that are not finished: they may
// still write to the node's volume.
func (c *Controller) activeJobPods(uid string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range c.jobPods(uid) {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out
}

func (c *Controller) deleteJob(ctx context.Context, namespace, name string, uid types.UID) error {
	foreground := metav1.DeletePropagationForeground
	err := c.deps.Kube.BatchV1().Jobs(namespace).Delete(ctx, name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid},
		PropagationPolicy: &foreground,
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// holdsOneOf reports whether h holds any of the workloads.
func holdsOneOf(ws []*nodeops.Workload, h nodeops.Holder) bool {
	for _, w := range ws {
		if nodeops.HeldBy(w, h) {
			return true
		}
	}
	return false
}
