// Package operations runs the operations: one named, rate-limited queue per
// CR kind feeding one state machine (validate → lock → stop → run → start →
// finish, see machine.go), driven by informers on the CRs and on what they
// touch (Jobs, pods, StatefulSets, Deployments, PVCs).
//
// The kinds are a table (kinds.go): each kind's file declares it once and
// registers it; the queues, informers and event handlers, and the tests,
// derive from the table (main only calls New).
//
// Adding an operation kind:
//
//  1. Its API type, pkg/apis/citacloud/v1/<kind>_types.go (spec embedding
//     NodeTarget, NodeJobOptions and JobOptions; status embedding
//     OperationStatus), then `make generate`: deepcopy, clientset,
//     listers, informers, the CRD and the chart's copy of it.
//  2. Its kind file here, <kind>.go: an init function that registers a
//     Kind — name, resource, Job suffix, informer, client, how its CR maps
//     onto the machine (Operation) and the hooks it needs, nothing else.
//  3. If its Job does new data work: that work in pkg/nodeops/datamove,
//     declared as a job-binary operation (its name and flags) in
//     jobargs' op table and given its runner in cmd/cita-node-job.
//  4. Its plural resource in the chart's one list of operation resources
//     (the operationResources template: RBAC and the finalizer policy).
//
// Tests fail if the API's kinds and the table differ (TestTableIsTheAPI),
// if the chart's list and the CRDs differ (test/packaging), or if a job
// operation lacks its runner (cmd/cita-node-job).
package operations

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// Config is what the operator's flags set.
type Config struct {
	// JobImage runs the operations' Jobs unless a CR names another image.
	JobImage string
	// StopGracePeriod: pods of a node still there this long after it was
	// scaled to 0 are deleted.
	StopGracePeriod time.Duration
	// StopTimeout: a node whose pods are still there after this fails the
	// operation (and the node is started again).
	StopTimeout time.Duration
	// JobStartTimeout: a Job pod that cannot start (image pull error,
	// unschedulable) for this long fails the operation.
	JobStartTimeout time.Duration
	// JobActiveDeadline bounds a Job's run.
	JobActiveDeadline time.Duration
	// StartReadyTimeout: a node started after a successful operation whose
	// pods are not all Ready after this fails the operation (NodeNotReady).
	StartReadyTimeout time.Duration
	// WaitRecheck is how often an operation waiting for a node looks again
	// even without an event.
	WaitRecheck time.Duration
}

// DefaultConfig holds the defaults of the operator's flags.
func DefaultConfig() Config {
	return Config{
		JobImage:          "ghcr.io/cita-cloud/cita-node-operator-job:latest",
		StopGracePeriod:   time.Minute,
		StopTimeout:       5 * time.Minute,
		JobStartTimeout:   2 * time.Minute,
		JobActiveDeadline: 12 * time.Hour,
		StartReadyTimeout: 5 * time.Minute,
		WaitRecheck:       30 * time.Second,
	}
}

// Controller runs operations of every kind.
type Controller struct {
	deps controller.Deps
	cfg  Config

	listers         nodeops.Listers
	jobs            batchlisters.JobLister
	podIndexer      cache.Indexer
	workloadIndexes []cache.Indexer // StatefulSets, Deployments
	kinds           []*kind
	kindByName      map[string]*kind
	synced          []cache.InformerSynced
	metrics         *metrics
	written         written
	createdJobs     created
}

// Index names.
const (
	// byWorkload indexes operations by the workloads they lock.
	byWorkload = "workload"
	// byUID indexes operations by UID, for pods labelled with it.
	byUID = "uid"
	// byHolder indexes workloads by the operation holding them.
	byHolder = "holder"
	// byOperationUID indexes pods by the operation that created them.
	byOperationUID = "operation-uid"
)

// New builds the operations controller from the process's shared
// dependencies: one queue per kind of the table, fed by the kinds' informers
// and by those of what operations touch. It registers event handlers and
// indexers, so call it before starting the informers.
func New(d controller.Deps, cfg Config) (*Controller, error) {
	return newController(d, cfg, table)
}

func newController(d controller.Deps, cfg Config, kinds []*declaration) (*Controller, error) {
	inf := d.Informers.Kube
	pods := inf.Core().V1().Pods()
	c := &Controller{
		deps: d, cfg: cfg,
		listers: nodeops.Listers{
			StatefulSets: inf.Apps().V1().StatefulSets().Lister(),
			Deployments:  inf.Apps().V1().Deployments().Lister(),
			Pods:         nodeops.NewIndexedPodLister(pods.Informer().GetIndexer()),
			PVCs:         inf.Core().V1().PersistentVolumeClaims().Lister(),
		},
		jobs:       inf.Batch().V1().Jobs().Lister(),
		podIndexer: pods.Informer().GetIndexer(),
		kindByName: map[string]*kind{},
		metrics:    newMetrics(),
	}
	c.listers.ConfigMapExists = c.configMapExists
	for _, decl := range kinds {
		c.kinds = append(c.kinds, decl.bind(c))
	}
	for _, k := range c.kinds {
		for _, r := range k.reads {
			c.synced = append(c.synced, r.HasSynced)
		}
		c.kindByName[k.name] = k
		if err := k.informer.AddIndexers(cache.Indexers{byWorkload: c.indexOperationWorkloads(k), byUID: indexUID}); err != nil {
			return nil, err
		}
		if _, err := k.informer.AddEventHandler(c.forgetting(c.operationHandler(k))); err != nil {
			return nil, err
		}
		c.synced = append(c.synced, k.informer.HasSynced)
	}

	for _, informer := range []cache.SharedIndexInformer{inf.Apps().V1().StatefulSets().Informer(), inf.Apps().V1().Deployments().Informer()} {
		if err := informer.AddIndexers(cache.Indexers{byHolder: indexHolder}); err != nil {
			return nil, err
		}
		if _, err := informer.AddEventHandler(c.forgetting(handlerFunc(c.workloadChanged))); err != nil {
			return nil, err
		}
		c.workloadIndexes = append(c.workloadIndexes, informer.GetIndexer())
		c.synced = append(c.synced, informer.HasSynced)
	}
	if err := pods.Informer().AddIndexers(cache.Indexers{byOperationUID: indexPodOperation, nodeops.PodsByLabel: nodeops.IndexPodLabels}); err != nil {
		return nil, err
	}
	for _, h := range []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandlerFuncs
	}{
		{pods.Informer(), handlerFunc(c.podChanged)},
		{inf.Batch().V1().Jobs().Informer(), c.forgetting(handlerFunc(c.ownedChanged))}, // the TTL patch is remembered
		{inf.Core().V1().PersistentVolumeClaims().Informer(), handlerFunc(c.ownedChanged)},
	} {
		if _, err := h.informer.AddEventHandler(h.handler); err != nil {
			return nil, err
		}
		c.synced = append(c.synced, h.informer.HasSynced)
	}
	if d.Metrics != nil {
		if err := c.register(d.Metrics); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run waits for the caches, then runs workers per kind until ctx is done.
// On return every worker has finished the item it was working on.
func (c *Controller) Run(ctx context.Context, workers int) error {
	work := make([]controller.Work, 0, len(c.kinds))
	for _, k := range c.kinds {
		work = append(work, controller.Work{Name: k.name, Queue: k.queue, Sync: func(ctx context.Context, key cache.ObjectName) error {
			return c.syncOperation(ctx, k, key)
		}})
	}
	return controller.RunQueues(ctx, workers, c.synced, work)
}

// citaV1 are the process's informers of every CR kind: a kind's hooks read
// other kinds through them (a Restore its Backup).
func (c *Controller) citaV1() citainformers.Interface { return c.deps.Informers.Cita.Citacloud().V1() }

// configMapExists asks the apiserver: ConfigMaps are not cached, because
// only validation reads one and a namespace may hold many.
func (c *Controller) configMapExists(namespace, name string) (bool, error) {
	_, err := c.deps.Kube.CoreV1().ConfigMaps(namespace).Get(context.TODO(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// --- event handlers: map every event to the operations it concerns ---

func handlerFunc(f func(obj any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    f,
		UpdateFunc: func(_, obj any) { f(obj) },
		DeleteFunc: f,
	}
}

// forgetting wraps a handler so that a deleted object's remembered writes
// are dropped with it.
func (c *Controller) forgetting(h cache.ResourceEventHandlerFuncs) cache.ResourceEventHandlerFuncs {
	del := h.DeleteFunc
	h.DeleteFunc = func(obj any) {
		if o, ok := metaOf(obj); ok {
			c.written.forget(o.GetUID())
		}
		del(obj)
	}
	return h
}

func (c *Controller) operationHandler(k *kind) cache.ResourceEventHandlerFuncs {
	return handlerFunc(func(obj any) {
		o, ok := metaOf(obj)
		if !ok {
			return
		}
		k.queue.Add(cache.MetaObjectToName(o))
		// An operation that releases its nodes, finishes or goes away may be
		// what others wait for.
		keys, err := k.informer.GetIndexer().IndexKeys(byUID, string(o.GetUID()))
		if err == nil && len(keys) == 0 || doneWithNodesInCache(k, obj) {
			for _, wk := range workloadKeysOf(k, obj) {
				c.enqueueWaiters(o.GetNamespace(), wk)
			}
		}
	})
}

// workloadChanged: a lock was taken or released, replicas changed.
func (c *Controller) workloadChanged(obj any) {
	o, ok := metaOf(obj)
	if !ok {
		return
	}
	kindName := "StatefulSet"
	if _, isDeploy := obj.(*appsv1.Deployment); isDeploy {
		kindName = "Deployment"
	} else if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		if _, isDeploy := t.Obj.(*appsv1.Deployment); isDeploy {
			kindName = "Deployment"
		}
	}
	c.enqueueWaiters(o.GetNamespace(), kindName+"/"+o.GetName())
	if h, held := nodeops.Held(o); held {
		if k := c.kindByName[h.Kind]; k != nil {
			k.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: h.Name})
		}
	}
}

// podChanged: a Job pod concerns its operation; a node's pod concerns the
// operations on its workload.
func (c *Controller) podChanged(obj any) {
	o, ok := metaOf(obj)
	if !ok {
		return
	}
	if uid := o.GetLabels()[nodeops.LabelOperationUID]; uid != "" {
		for _, k := range c.kinds {
			items, _ := k.informer.GetIndexer().ByIndex(byUID, uid)
			for _, item := range items {
				if m, ok := metaOf(item); ok {
					k.queue.Add(cache.MetaObjectToName(m))
				}
			}
		}
		return
	}
	if wk := podWorkloadKey(o); wk != "" {
		c.enqueueWaiters(o.GetNamespace(), wk)
	}
}

// ownedChanged: Jobs and PVCs enqueue the operation that owns them.
func (c *Controller) ownedChanged(obj any) {
	o, ok := metaOf(obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.APIVersion != citav1.SchemeGroupVersion.String() {
		return
	}
	k := c.kindByName[ref.Kind]
	if k == nil {
		return
	}
	item, exists, err := k.informer.GetIndexer().GetByKey(o.GetNamespace() + "/" + ref.Name)
	if err != nil || !exists {
		return
	}
	if owner, ok := metaOf(item); ok && owner.GetUID() == ref.UID {
		k.queue.Add(cache.MetaObjectToName(owner))
	}
}

// enqueueWaiters enqueues every operation that locks the workload.
func (c *Controller) enqueueWaiters(namespace, workloadKey string) {
	for _, k := range c.kinds {
		items, err := k.informer.GetIndexer().ByIndex(byWorkload, namespace+"/"+workloadKey)
		if err != nil {
			continue
		}
		for _, item := range items {
			if m, ok := metaOf(item); ok {
				k.queue.Add(cache.MetaObjectToName(m))
			}
		}
	}
}

func metaOf(obj any) (metav1.Object, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, ok := obj.(metav1.Object)
	return o, ok
}

// --- indexers ---

func indexUID(obj any) ([]string, error) {
	o, ok := metaOf(obj)
	if !ok {
		return nil, nil
	}
	return []string{string(o.GetUID())}, nil
}

func (c *Controller) indexOperationWorkloads(k *kind) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		o, ok := metaOf(obj)
		if !ok {
			return nil, nil
		}
		var out []string
		for _, wk := range workloadKeysOf(k, obj) {
			out = append(out, o.GetNamespace()+"/"+wk)
		}
		return out, nil
	}
}

// workloadKeysOf maps a cached CR to the workloads it locks.
func workloadKeysOf(k *kind, obj any) []string {
	op := k.view(obj)
	if op == nil {
		return nil
	}
	keys := make([]string, 0, len(op.targets))
	for _, t := range op.targets {
		keys = append(keys, nodeops.WorkloadKey(t))
	}
	return keys
}

func indexHolder(obj any) ([]string, error) {
	o, ok := metaOf(obj)
	if !ok {
		return nil, nil
	}
	if h, held := nodeops.Held(o); held {
		return []string{o.GetNamespace() + "/" + h.String()}, nil
	}
	return nil, nil
}

func indexPodOperation(obj any) ([]string, error) {
	o, ok := metaOf(obj)
	if !ok {
		return nil, nil
	}
	if uid := o.GetLabels()[nodeops.LabelOperationUID]; uid != "" {
		return []string{uid}, nil
	}
	return nil, nil
}

// podWorkloadKey is the workload a node's pod belongs to: its StatefulSet,
// or the Deployment behind its ReplicaSet.
func podWorkloadKey(o metav1.Object) string {
	ref := metav1.GetControllerOf(o)
	if ref == nil {
		return ""
	}
	switch ref.Kind {
	case "StatefulSet":
		return "StatefulSet/" + ref.Name
	case "ReplicaSet":
		if hash := o.GetLabels()[appsv1.DefaultDeploymentUniqueLabelKey]; hash != "" && len(ref.Name) > len(hash)+1 {
			return "Deployment/" + ref.Name[:len(ref.Name)-len(hash)-1]
		}
	}
	return ""
}

// endedInCache reports whether a cached CR of kind k is Complete or Failed.
func endedInCache(k *kind, obj any) bool {
	op := k.view(obj)
	return op != nil && ended(op.status)
}

// doneWithNodesInCache reports whether a cached CR of kind k no longer
// needs its nodes: it ended, or it started them and awaits their pods.
func doneWithNodesInCache(k *kind, obj any) bool {
	op := k.view(obj)
	return op != nil && (ended(op.status) || awaitingReady(op.status))
}

// jobPods are the pods of the operation's Job(s), found by label.
func (c *Controller) jobPods(uid string) []*corev1.Pod {
	items, _ := c.podIndexer.ByIndex(byOperationUID, uid)
	pods := make([]*corev1.Pod, 0, len(items))
	for _, item := range items {
		if p, ok := item.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods
}
