package operations

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller"
	citaclient "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/typed/citacloud/v1"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// kindSpec declares one operation kind, once: its file in this package
// registers it (register, from an init function) and the controller — its
// queues, informers and handlers — and the tests take it from the table. T
// is the CR's Go type.
type kindSpec[T object] struct {
	// Name is the CR's kind; it names its queue, its metrics and, on a
	// workload it holds, the holder.
	Name string
	// Resource is the CR's plural resource name.
	Resource string
	// JobSuffix names the operation's Job: <CR name>-<JobSuffix>.
	JobSuffix string
	// Informer and Client pick the kind's shared informer and typed client.
	Informer func(citainformers.Interface) cache.SharedIndexInformer
	// Reads are the informers of other kinds its hooks read (a Restore its
	// Backup or Snapshot): started and awaited with the kind's own.
	Reads  []func(citainformers.Interface) cache.SharedIndexInformer
	Client func(c citaclient.CitacloudV1Interface, namespace string) crClient[T]
	// Operation maps a CR onto the machine: its status, nodes and the
	// options every kind shares (see nodeOperation).
	Operation func(T) *operation
	hooks[T]
}

// hooks are what a kind does that is its own. A kind sets exactly one of
// Job and Run, and of the others those it needs.
type hooks[T object] struct {
	// Validate checks what the operation references beyond its nodes; an
	// *nodeops.InvalidError fails it before anything is touched.
	Validate func(ctx context.Context, c *Controller, op *operation, cr T, nodes []*nodeops.Node) error
	// DirectNeedsStoppedNode: with action Direct, run only on a node that
	// is already stopped (the work would rewrite a database a running
	// process holds).
	DirectNeedsStoppedNode bool
	// Prepare creates what the Job needs (a PVC) and reports whether the
	// Job can be created.
	Prepare func(ctx context.Context, c *Controller, op *operation, cr T, nodes []*nodeops.Node) (ready bool, err error)
	// Job says what the operation's Job runs: the job binary's operation
	// and flags, and the Backup/Snapshot claim it mounts. Set exactly one
	// of Job and Run.
	Job func(c *Controller, cr T, nodes []*nodeops.Node) (jobWork, error)
	// RecordResult puts a successful Job's result into the kind's own
	// status fields.
	RecordResult func(cr T, r *jobargs.Result)
	// Run does the work in the controller itself, with no Job; it must be
	// idempotent and reports whether the work is done.
	Run func(ctx context.Context, c *Controller, op *operation, cr T, nodes []*nodeops.Node) (done bool, err error)
	// RecordsAccounts: each node's account ConfigMap is recorded on its
	// workload when it is locked (the swap is computed from the records).
	RecordsAccounts bool
	// BeforeStart runs after the work, before the nodes are started: a
	// kind that left the nodes inconsistent on failure puts them right
	// (changed: look again once the cache shows it).
	BeforeStart func(ctx context.Context, c *Controller, op *operation, cr T, held []*nodeops.Workload) (changed bool, err error)
	// WritesNodeRoot: the kind's Job rewrites the node root in place. The
	// job binary puts the data back itself when it fails or is asked to
	// stop; when it is killed outright (OOM, a lost machine) a recovery Job
	// runs before the node starts.
	WritesNodeRoot bool
}

// jobWork is what an operation's Job runs.
type jobWork struct {
	Args jobargs.Args
	// Claim is a Backup or Snapshot PVC mounted at jobargs.BackupMountPath.
	Claim    string
	ReadOnly bool
}

// crClient is the part of a generated typed client the machine uses.
type crClient[T object] interface {
	UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// declaration is a Kind with its CR type erased: what the table holds.
type declaration struct {
	name, resource, jobSuffix string
	// typeName is the Go type's name: the API kind T was generated for.
	typeName               string
	directNeedsStoppedNode bool
	recordsAccounts        bool
	writesNodeRoot         bool
	// bind makes the kind's runtime half for one controller.
	bind func(c *Controller) *kind
}

var table []*declaration

// register adds a kind to the table; each kind's file calls it from init.
func register[T object](k kindSpec[T]) {
	if (k.Job == nil) == (k.Run == nil) {
		panic(fmt.Sprintf("operation kind %s: set exactly one of Job and Run", k.Name))
	}
	table = append(table, declare(k))
	sort.Slice(table, func(i, j int) bool { return table[i].name < table[j].name })
}

func declare[T object](k kindSpec[T]) *declaration {
	d := &declaration{
		name: k.Name, resource: k.Resource, jobSuffix: k.JobSuffix,
		typeName:               reflect.TypeFor[T]().Elem().Name(),
		directNeedsStoppedNode: k.DirectNeedsStoppedNode,
		recordsAccounts:        k.RecordsAccounts,
		writesNodeRoot:         k.WritesNodeRoot,
	}
	d.bind = func(c *Controller) *kind {
		informer := k.Informer(c.citaV1())
		client := func(namespace string) crClient[T] { return k.Client(c.deps.Cita.CitacloudV1(), namespace) }
		kd := &kind{declaration: d, informer: informer, queue: controller.NewQueue(k.Name)}
		for _, read := range k.Reads {
			kd.reads = append(kd.reads, read(c.citaV1()))
		}
		cr := func(op *operation) T { return op.obj.(T) }
		kd.view = func(obj any) *operation {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			o, ok := obj.(T)
			if !ok {
				return nil
			}
			return k.Operation(o)
		}
		kd.get = func(key cache.ObjectName) (*operation, error) {
			item, exists, err := informer.GetIndexer().GetByKey(key.String())
			if err != nil {
				return nil, err
			}
			if !exists {
				return nil, apierrors.NewNotFound(citav1.Resource(k.Name), key.Name)
			}
			o, ok := item.(T)
			if !ok {
				return nil, fmt.Errorf("%s cache holds a %T", k.Name, item)
			}
			op := k.Operation(o.DeepCopyObject().(T))
			op.kind = kd
			return op, nil
		}
		kd.updateStatus = func(ctx context.Context, op *operation) (string, error) {
			out, err := client(op.obj.GetNamespace()).UpdateStatus(ctx, cr(op), metav1.UpdateOptions{})
			if err != nil {
				return "", err
			}
			return out.GetResourceVersion(), nil
		}
		kd.patch = func(ctx context.Context, namespace, name string, data []byte) (string, error) {
			out, err := client(namespace).Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{})
			if err != nil {
				return "", err
			}
			return out.GetResourceVersion(), nil
		}
		if k.Validate != nil {
			kd.validate = func(ctx context.Context, op *operation, nodes []*nodeops.Node) error {
				return k.Validate(ctx, c, op, cr(op), nodes)
			}
		}
		if k.Prepare != nil {
			kd.prepare = func(ctx context.Context, op *operation, nodes []*nodeops.Node) (bool, error) {
				return k.Prepare(ctx, c, op, cr(op), nodes)
			}
		}
		if k.Job != nil {
			kd.job = func(op *operation, nodes []*nodeops.Node) (jobWork, error) { return k.Job(c, cr(op), nodes) }
		}
		if k.RecordResult != nil {
			kd.recordResult = func(op *operation, r *jobargs.Result) { k.RecordResult(cr(op), r) }
		}
		if k.Run != nil {
			kd.run = func(ctx context.Context, op *operation, nodes []*nodeops.Node) (bool, error) {
				return k.Run(ctx, c, op, cr(op), nodes)
			}
		}
		if k.BeforeStart != nil {
			kd.beforeStart = func(ctx context.Context, op *operation, held []*nodeops.Workload) (bool, error) {
				return k.BeforeStart(ctx, c, op, cr(op), held)
			}
		}
		return kd
	}
	return d
}

// kind is a declared kind bound to one controller: its queue, its cache, how
// to write it, and its hooks (nil where the kind has none).
type kind struct {
	*declaration
	queue    controller.Queue
	informer cache.SharedIndexInformer
	reads    []cache.SharedIndexInformer
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

	validate     func(ctx context.Context, op *operation, nodes []*nodeops.Node) error
	prepare      func(ctx context.Context, op *operation, nodes []*nodeops.Node) (bool, error)
	job          func(op *operation, nodes []*nodeops.Node) (jobWork, error)
	recordResult func(op *operation, r *jobargs.Result)
	run          func(ctx context.Context, op *operation, nodes []*nodeops.Node) (bool, error)
	beforeStart  func(ctx context.Context, op *operation, held []*nodeops.Workload) (bool, error)
}
