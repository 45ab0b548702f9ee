package nodeops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

// StoppedReplicas is the replica count recorded when the workload was
// stopped; ok is false when it is not stopped by an operation.
func StoppedReplicas(w *Workload) (replicas int32, ok bool) {
	v, ok := w.Object.GetAnnotations()[AnnotationReplicas]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		// Unreadable: start with one replica rather than leave the node down.
		return 1, true
	}
	return int32(n), true
}

// RecordedMachine is the Kubernetes node recorded at the stop.
func RecordedMachine(w *Workload) string { return w.Object.GetAnnotations()[AnnotationMachine] }

// RecordedAccount is the account ConfigMap recorded before a Switchover.
func RecordedAccount(w *Workload) string { return w.Object.GetAnnotations()[AnnotationAccount] }

// RecordedNode is the node recorded by the lock of a single-node
// operation; ok is false when there is none (a Switchover, or a lock taken
// by an operator that did not record it).
func RecordedNode(w *Workload) (t Target, ok bool) {
	parts := strings.Split(w.Object.GetAnnotations()[AnnotationNode], "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Target{}, false
	}
	return Target{Namespace: w.Object.GetNamespace(), Method: citav1.DeployMethod(parts[0]), Chain: parts[1], Name: parts[2]}, true
}

// LockRequest says what taking a workload records.
type LockRequest struct {
	Holder Holder
	// Stop also scales the workload to 0, recording its replicas and
	// Machine in the same write, so no crash can leave one without the other.
	Stop    bool
	Machine string
	// Account, if set, records the node's account ConfigMap (Switchover).
	Account string
	// Node, if set, records the operation's one node (AnnotationNode).
	Node *Target
}

type patchMeta struct {
	ResourceVersion string             `json:"resourceVersion"`
	Annotations     map[string]*string `json:"annotations"`
}

type patchSpec struct {
	Replicas int32 `json:"replicas"`
}

type workloadPatch struct {
	Metadata patchMeta  `json:"metadata"`
	Spec     *patchSpec `json:"spec,omitempty"`
}

func str(s string) *string { return &s }

// LockPatch is the merge patch that takes the workload for r.Holder. It
// carries the cached resourceVersion: if anyone changed the workload since,
// the apiserver refuses it with a conflict and nothing is written.
func LockPatch(w *Workload, r LockRequest) Patch {
	p := workloadPatch{Metadata: patchMeta{
		ResourceVersion: w.Object.GetResourceVersion(),
		Annotations: map[string]*string{
			AnnotationHolder:    str(r.Holder.String()),
			AnnotationHolderUID: str(string(r.Holder.UID)),
		},
	}}
	if r.Stop {
		p.Metadata.Annotations[AnnotationReplicas] = str(strconv.Itoa(int(w.Replicas)))
		p.Metadata.Annotations[AnnotationMachine] = str(r.Machine)
		p.Spec = &patchSpec{Replicas: 0}
	}
	if r.Account != "" {
		p.Metadata.Annotations[AnnotationAccount] = str(r.Account)
	}
	if r.Node != nil {
		p.Metadata.Annotations[AnnotationNode] = str(string(r.Node.Method) + "/" + r.Node.Chain + "/" + r.Node.Name)
	}
	return Patch{Type: types.MergePatchType, Data: mustJSON(p)}
}

// Patch is one write to a workload: how its body is to be read, and the
// body.
type Patch struct {
	Type types.PatchType
	Data []byte
}

// jsonPatchOp is one operation of a JSON patch (RFC 6902).
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// annotationPath is the JSON pointer of an annotation ("/" in a key is
// written "~1", "~" is "~0").
func annotationPath(key string) string {
	return "/metadata/annotations/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}

// ReleasePatch removes the lock. If the holder stopped the workload and it
// is still at 0 replicas, it is started with the recorded count in the same
// write; if someone else scaled it meanwhile, their count is left alone.
//
// Unlike LockPatch it is guarded by what the release depends on, not by the
// resourceVersion: a JSON patch that first tests the object (its UID), the
// lock's holder (name and UID) and the replica count the cache shows. The workload's own controller writes its
// status while the node is stopped, under load long after the node's pods
// are gone (84 s after the stop in the N=500 bench), and a resourceVersion
// would refuse the start for that write alone. A test that fails (someone
// scaled the workload, or took or dropped the lock, since the cache saw it)
// comes back from PatchWorkload as a conflict, as a stale resourceVersion
// would.
func ReleasePatch(w *Workload) Patch {
	a := w.Object.GetAnnotations()
	var ops []jsonPatchOp
	if uid := w.Object.GetUID(); uid != "" {
		ops = append(ops, jsonPatchOp{Op: "test", Path: "/metadata/uid", Value: string(uid)})
	}
	for _, k := range []string{AnnotationHolder, AnnotationHolderUID} {
		if v, ok := a[k]; ok {
			ops = append(ops, jsonPatchOp{Op: "test", Path: annotationPath(k), Value: v})
		}
	}
	ops = append(ops, jsonPatchOp{Op: "test", Path: "/spec/replicas", Value: w.Replicas})
	for _, k := range lockAnnotations {
		if _, ok := a[k]; ok {
			ops = append(ops, jsonPatchOp{Op: "remove", Path: annotationPath(k)})
		}
	}
	if replicas, stopped := StoppedReplicas(w); stopped && w.Replicas == 0 {
		ops = append(ops, jsonPatchOp{Op: "replace", Path: "/spec/replicas", Value: replicas})
	}
	return Patch{Type: types.JSONPatchType, Data: mustJSON(ops)}
}

// PatchWorkload sends a patch to the workload and returns the
// resourceVersion it wrote. A JSON patch whose test failed is returned as a
// conflict: the workload changed since the cache the patch was built from.
func PatchWorkload(ctx context.Context, c kubernetes.Interface, w *Workload, namespace string, p Patch) (string, error) {
	var (
		obj      metav1.Object
		err      error
		resource string
	)
	switch w.Kind {
	case "StatefulSet":
		resource = "statefulsets"
		obj, err = c.AppsV1().StatefulSets(namespace).Patch(ctx, w.Name, p.Type, p.Data, metav1.PatchOptions{})
	case "Deployment":
		resource = "deployments"
		obj, err = c.AppsV1().Deployments(namespace).Patch(ctx, w.Name, p.Type, p.Data, metav1.PatchOptions{})
	default:
		return "", fmt.Errorf("unknown workload kind %q", w.Kind)
	}
	if err != nil {
		if p.Type == types.JSONPatchType && testFailed(err) {
			return "", apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: resource}, w.Name, fmt.Errorf("it changed since it was read (the patch does not apply: %w)", err))
		}
		return "", err
	}
	return obj.GetResourceVersion(), nil
}

// testFailed reports whether the apiserver refused a JSON patch because it
// does not apply to the stored object: a path it tests holds another value,
// or a path it removes is gone. The apiserver answers that with a bare 422
// and a fixed message (the patch library's own stays on the server: no
// object named, no causes), where a refusal by validation or admission
// names the object or its causes, or says who refused.
func testFailed(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) {
		return false
	}
	s := status.Status()
	d := s.Details
	return s.Message == patchNotApplied && (d == nil || (d.Name == "" && len(d.Causes) == 0))
}

// patchNotApplied is the message of the apiserver's bare 422.
var patchNotApplied = apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", "", 0, false).ErrStatus.Message

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
