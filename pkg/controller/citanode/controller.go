package citanode

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller"
	citalisters "github.com/cita-cloud/cita-node-operator/pkg/generated/listers/citacloud/v1"
)

// FieldManager owns the fields the controller applies.
const FieldManager = "cita-node-operator/citanode"

// Controller keeps each CitaNode's StatefulSet, Service and peer Services
// as Render shapes them.
type Controller struct {
	deps    controller.Deps
	queue   controller.Queue
	nodes   citalisters.CitaNodeLister
	sets    appslisters.StatefulSetLister
	svcs    corelisters.ServiceLister
	pods    corelisters.PodLister
	synced  []cache.InformerSynced
	applied applied
	poller  *poller
	metrics *metrics
}

// Config is what the operator's flags set.
type Config struct {
	Poll PollConfig
}

// DefaultConfig holds the defaults of the operator's flags.
func DefaultConfig() Config { return Config{Poll: DefaultPollConfig()} }

// New builds the controller from the process's shared dependencies and
// registers its event handlers; call it before starting the informers.
func New(d controller.Deps, cfg Config) (*Controller, error) {
	cn := d.Informers.Cita.Citacloud().V1().CitaNodes()
	sts := d.Informers.Kube.Apps().V1().StatefulSets()
	svc := d.Informers.Kube.Core().V1().Services()
	pods := d.Informers.Kube.Core().V1().Pods()
	c := &Controller{
		deps:  d,
		queue: controller.NewQueue("CitaNode"),
		nodes: cn.Lister(), sets: sts.Lister(), svcs: svc.Lister(), pods: pods.Lister(),
		applied: applied{generations: map[string][2]int64{}, bodies: map[string]string{}},
		poller:  newPoller(cfg.Poll),
		metrics: newMetrics(),
	}
	if d.Metrics != nil {
		if err := c.metrics.register(d.Metrics); err != nil {
			return nil, err
		}
	}
	handlers := []struct {
		informer cache.SharedIndexInformer
		handler  func(obj any)
	}{
		{cn.Informer(), c.enqueue},
		{sts.Informer(), c.enqueueFor},
		{svc.Informer(), c.enqueueFor},
		{pods.Informer(), c.enqueueForPod},
	}
	for _, h := range handlers {
		if _, err := h.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    h.handler,
			UpdateFunc: func(_, obj any) { h.handler(obj) },
			DeleteFunc: h.handler,
		}); err != nil {
			return nil, err
		}
		c.synced = append(c.synced, h.informer.HasSynced)
	}
	return c, nil
}

// Run waits for the caches, then runs workers until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	return controller.RunQueues(ctx, workers, c.synced, []controller.Work{{Name: "CitaNode", Queue: c.queue, Sync: c.sync}})
}

func metaOf(obj any) (metav1.Object, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, ok := obj.(metav1.Object)
	return o, ok
}

func (c *Controller) enqueue(obj any) {
	if o, ok := metaOf(obj); ok {
		c.queue.Add(cache.MetaObjectToName(o))
	}
}

// enqueueFor: a StatefulSet or Service concerns the CitaNode that owns it,
// or, for one of the same name that no CitaNode owns, the CitaNode that
// would adopt it.
func (c *Controller) enqueueFor(obj any) {
	o, ok := metaOf(obj)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(o); ref != nil {
		if ref.APIVersion == citav1.SchemeGroupVersion.String() && ref.Kind == "CitaNode" {
			c.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: ref.Name})
		}
		if _, isSet := obj.(*appsv1.StatefulSet); !isSet {
			return
		}
	}
	if _, err := c.nodes.CitaNodes(o.GetNamespace()).Get(o.GetName()); err == nil {
		c.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: o.GetName()})
	}
}

// enqueueForPod: the node's pod <name>-0 tells its phase.
func (c *Controller) enqueueForPod(obj any) {
	o, ok := metaOf(obj)
	if !ok {
		return
	}
	if node := o.GetLabels()[LabelChainNode]; node != "" {
		c.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: node})
	}
}
