package nodeops

import (
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The workload lock: a contract for every writer of a node's workload.
//
// The lock on a node, and what stopping it recorded, live in annotations of
// the node's workload itself (the StatefulSet or Deployment that stop and
// start scale): they survive an operator restart and a deleted CR, and the
// apiserver's resourceVersion check makes taking the lock atomic. Only an
// operation (pkg/controller/operations) takes and releases the lock, with LockPatch and
// ReleasePatch.
//
// A workload is held by an operation while it carries AnnotationHolder,
// whatever its value and whatever the UID beside it: an operation of the same
// kind and name but another UID (a namesake, the CR deleted and created
// again) still holds it until the operator releases it. Held tells; nothing
// else does (a workload at 0 replicas may be stopped by hand, one at its
// usual count may be held by a Direct operation).
//
// Every other writer of a node's workload in this project — the CitaNode
// controller, a rollout, a schedule — follows these rules:
//
//   - It never writes a held workload: not spec.replicas (the operation
//     aborts when someone scales its node up, and restores the count it
//     recorded), not the lock annotations, and not the rest of its spec
//     either (a Switchover swaps the pod template's account volume, which a
//     writer converging the template would undo, and what the release
//     starts must be the node the operation worked on). CheckWritable,
//     called right before the write, says so and names the holder.
//   - It never writes the lock annotations at all, held or not (writing them
//     on a free workload forges a lock nobody releases): IsLockAnnotation
//     tells which keys to leave out of what it writes.
//   - It converges to its own desired state only after the release: it waits
//     for the workload's next change (the release is a write to the
//     workload, so a watch on it sees it), then reads and checks again. The
//     release puts back the replicas the operation recorded, which is the
//     count the writer found before the operation.
//   - Its write is conditioned on the object it checked: it carries that
//     object's resourceVersion (a merge patch's metadata.resourceVersion, an
//     Update, an apply configuration's WithResourceVersion), so a lock taken
//     since the check makes the apiserver refuse the write rather than
//     undo the stop.
//
// A conflict between two writers of the project is a bug in one of them, not
// a retry: a refused write is re-read and checked again (and then waits for
// the release), never sent again as it was.
const (
	// AnnotationHolder names the operation holding the workload: Kind/name.
	// Its presence is what makes the workload held.
	AnnotationHolder = "citacloud.rivtower.com/operation"
	// AnnotationHolderUID is the holder's UID, to tell it from a namesake.
	AnnotationHolderUID = "citacloud.rivtower.com/operation-uid"
	// AnnotationReplicas is the replica count before the holder stopped the
	// workload; present only while it is stopped by the holder.
	AnnotationReplicas = "citacloud.rivtower.com/stopped-replicas"
	// AnnotationMachine is the Kubernetes node the node's pod ran on before
	// the stop.
	AnnotationMachine = "citacloud.rivtower.com/stopped-machine"
	// AnnotationAccount is the account ConfigMap a Switchover found on the
	// node before swapping, so the swap is computed from it, exactly once.
	AnnotationAccount = "citacloud.rivtower.com/account-before-switchover"
	// AnnotationNode is the node a single-node operation works on, as
	// deployMethod/chain/node: what finding the node's data takes once the
	// operation itself is gone (a recovery before an orphaned node starts).
	AnnotationNode = "citacloud.rivtower.com/operation-node"
)

// lockAnnotations are every annotation a lock writes.
var lockAnnotations = []string{AnnotationHolder, AnnotationHolderUID, AnnotationReplicas, AnnotationMachine, AnnotationAccount, AnnotationNode}

// IsLockAnnotation reports whether key is one of the lock's annotations,
// which only the operations write.
func IsLockAnnotation(key string) bool { return slices.Contains(lockAnnotations, key) }

// Holder identifies an operation that holds (or wants) a node.
type Holder struct {
	Kind string
	Name string
	UID  types.UID
}

func (h Holder) String() string { return h.Kind + "/" + h.Name }

// Held returns the operation holding a node's workload (a StatefulSet or
// Deployment, from a lister or the apiserver), if any.
func Held(obj metav1.Object) (Holder, bool) {
	a := obj.GetAnnotations()
	v, ok := a[AnnotationHolder]
	if !ok {
		return Holder{}, false
	}
	var h Holder
	for i := 0; i < len(v); i++ {
		if v[i] == '/' {
			h.Kind, h.Name = v[:i], v[i+1:]
			break
		}
	}
	h.UID = types.UID(a[AnnotationHolderUID])
	return h, true
}

// HolderOf returns the operation holding the workload, if any.
func HolderOf(w *Workload) (Holder, bool) { return Held(w.Object) }

// HeldBy reports whether h holds the workload.
func HeldBy(w *Workload, h Holder) bool {
	got, ok := HolderOf(w)
	return ok && got.UID == h.UID
}

// HeldError is CheckWritable's refusal: an operation holds the workload.
// It is a reason to wait for the release, not an error to retry.
type HeldError struct {
	// Workload is "Kind namespace/name" ("workload namespace/name" for an
	// object of another type).
	Workload string
	Holder   Holder
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is held by operation %s (uid %s): write it only after the operation releases it", e.Workload, e.Holder, e.Holder.UID)
}

// CheckWritable is the guard of every writer of a node's workload other than
// the operations, called right before the write with the object the write
// is built from: nil when no operation holds it, a *HeldError naming the
// holder when one does (then write nothing, and check again on the
// workload's next change).
func CheckWritable(obj metav1.Object) error {
	h, held := Held(obj)
	if !held {
		return nil
	}
	kind := "workload"
	switch obj.(type) {
	case *appsv1.StatefulSet:
		kind = "StatefulSet"
	case *appsv1.Deployment:
		kind = "Deployment"
	}
	return &HeldError{Workload: kind + " " + obj.GetNamespace() + "/" + obj.GetName(), Holder: h}
}
