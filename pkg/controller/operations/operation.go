package operations

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// object is a CR of any of the operation kinds.
type object interface {
	metav1.Object
	runtime.Object
}

// operation is one CR as the state machine sees it: a deep copy it may
// change, with the parts every kind shares pulled out; what is the kind's
// own is in its hooks (op.kind).
type operation struct {
	kind    *kind
	obj     object
	status  *citav1.OperationStatus // points into obj
	targets []nodeops.Target
	action  citav1.Action
	job     citav1.JobOptions
	// affinity pins the Job to the machine the node ran on.
	affinity bool
	// started notes the workloads this sync started, for the Done message.
	started []string
}

func (op *operation) holder() nodeops.Holder {
	return nodeops.Holder{Kind: op.kind.name, Name: op.obj.GetName(), UID: op.obj.GetUID()}
}

func (op *operation) key() cache.ObjectName {
	return cache.ObjectName{Namespace: op.obj.GetNamespace(), Name: op.obj.GetName()}
}

func (op *operation) ownerRef() metav1.OwnerReference {
	return *metav1.NewControllerRef(op.obj, citav1.SchemeGroupVersion.WithKind(op.kind.name))
}

func (op *operation) stopsNode() bool { return op.action != citav1.ActionDirect }

// nodeOperation is the operation of a kind that works on one node with the
// options every such kind shares.
func nodeOperation(obj object, status *citav1.OperationStatus, t citav1.NodeTarget, opts citav1.NodeJobOptions, job citav1.JobOptions) *operation {
	return &operation{
		obj:      obj,
		status:   status,
		targets:  []nodeops.Target{target(obj.GetNamespace(), t)},
		action:   opts.Action,
		job:      job,
		affinity: ptr.Deref(opts.PodAffinityFlag, false),
	}
}

func target(namespace string, t citav1.NodeTarget) nodeops.Target {
	return nodeops.Target{Namespace: namespace, Chain: t.Chain, Name: t.Node, Method: t.DeployMethod}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
