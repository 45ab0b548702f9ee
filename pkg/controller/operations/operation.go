package operations

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// object is a CR of any of the operation kinds.
type object interface {
	metav1.Object
	runtime.Object
}

// operation is one CR as the state machine sees it: a deep copy it may
// change, with the parts every kind shares pulled out, and the kind-specific
// behaviour in work.
type operation struct {
	kind    *kind
	obj     object
	status  *citav1.OperationStatus // points into obj
	targets []nodeops.Target
	action  citav1.Action
	job     citav1.JobOptions
	// affinity pins the Job to the machine the node ran on.
	affinity bool
	work     work
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

// work is what an operation kind does between stopping and starting its
// nodes. A new operation is one more implementation of it plus its kind.
type work interface {
	// validate checks what the operation references beyond its nodes; an
	// *nodeops.InvalidError fails the operation before anything is touched.
	validate(ctx context.Context, c *Controller, op *operation, nodes []*nodeops.Node) error
	// directNeedsStoppedNode: with action Direct, run only on a stopped node.
	directNeedsStoppedNode() bool
	// prepare creates what the Job needs (a PVC); ready reports whether it
	// can start.
	prepare(ctx context.Context, c *Controller, op *operation, nodes []*nodeops.Node) (ready bool, err error)
	// jobArgs returns the job binary's arguments and the Backup/Snapshot
	// claim to mount. Kinds that run without a Job implement runner.
	jobArgs(c *Controller, op *operation, nodes []*nodeops.Node) (args jobargs.Args, claim string, readOnly bool, err error)
	// recordResult puts the Job's result into the kind's own status fields.
	recordResult(op *operation, r *jobargs.Result)
}

// runner is implemented by kinds whose work is done by the controller
// itself rather than by a Job (Switchover). run must be idempotent.
type runner interface {
	run(ctx context.Context, c *Controller, op *operation, nodes []*nodeops.Node) (done bool, err error)
}

// kind is one CR kind: its queue, its cache and how to write it.
type kind struct {
	name      string
	jobSuffix string
	// writesNodeRoot: the kind's Job rewrites the node root in place (its
	// work is a nodeRootWriter); known without a CR, for an orphan's node.
	writesNodeRoot bool
	queue          controller.Queue
	informer       cache.SharedIndexInformer
	// view wraps a cached CR (or a deletion tombstone of one) without
	// copying it: for reading only. nil if obj is not of this kind.
	view func(obj any) *operation
	// get returns the operation for a cached CR (a deep copy).
	get func(key cache.ObjectName) (*operation, error)
	// updateStatus writes op's status through the status subresource and
	// returns the resourceVersion written.
	updateStatus func(ctx context.Context, op *operation) (string, error)
	// patch sends a merge patch to the CR's metadata and returns the
	// resourceVersion written.
	patch func(ctx context.Context, namespace, name string, data []byte) (string, error)
}

// accountSwapper is implemented by kinds that need each node's account
// ConfigMap recorded on its workload when they lock it (Switchover).
type accountSwapper interface {
	swapsAccounts()
}

// nodeOperation is the operation of a kind that works on one node with the
// options every such kind shares.
func nodeOperation(obj object, status *citav1.OperationStatus, t citav1.NodeTarget, opts citav1.NodeJobOptions, job citav1.JobOptions, w work) *operation {
	return &operation{
		obj:      obj,
		status:   status,
		targets:  []nodeops.Target{target(obj.GetNamespace(), t)},
		action:   opts.Action,
		job:      job,
		affinity: ptr.Deref(opts.PodAffinityFlag, false),
		work:     w,
	}
}

// accountReverter is implemented by kinds that must leave the nodes'
// accounts consistent before starting them after a failure (Switchover: a
// half-done swap would start two nodes with one account).
type accountReverter interface {
	revertAccounts(ctx context.Context, c *Controller, op *operation, held []*nodeops.Workload) (changed bool, err error)
}
