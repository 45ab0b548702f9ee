package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned"
	citascheme "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/scheme"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions"
)

// Informers are the process's informer factories. main builds them once;
// each controller takes the informers it needs from them (the factories
// share one informer per type) before they are started.
type Informers struct {
	Kube informers.SharedInformerFactory
	Cita citainformers.SharedInformerFactory
}

// NewInformers builds the factories over namespace ("" for all), with the
// trimming cache transform.
func NewInformers(kube kubernetes.Interface, cita versioned.Interface, namespace string, resync time.Duration) Informers {
	return Informers{
		Kube: informers.NewSharedInformerFactoryWithOptions(kube, resync,
			informers.WithNamespace(namespace), informers.WithTransform(TrimForCache)),
		Cita: citainformers.NewSharedInformerFactoryWithOptions(cita, resync,
			citainformers.WithNamespace(namespace), citainformers.WithTransform(TrimForCache)),
	}
}

// Start starts every informer the controllers asked for.
func (i Informers) Start(ctx context.Context) {
	i.Kube.Start(ctx.Done())
	i.Cita.Start(ctx.Done())
}

// WaitForCacheSync returns once every started informer synced or ctx is
// done.
func (i Informers) WaitForCacheSync(ctx context.Context) {
	i.Kube.WaitForCacheSync(ctx.Done())
	i.Cita.WaitForCacheSync(ctx.Done())
}

// Shutdown waits for the informers' goroutines once ctx is done.
func (i Informers) Shutdown() {
	i.Kube.Shutdown()
	i.Cita.Shutdown()
}

// Deps is what a controller of the process is built from.
type Deps struct {
	Kube      kubernetes.Interface
	Cita      versioned.Interface
	Informers Informers
	Recorder  record.EventRecorder
	Clock     clock.Clock
	// Metrics, if set, receives the controller's metrics.
	Metrics prometheus.Registerer
}

// Runner is one controller of the process.
type Runner interface {
	// Run waits for the controller's caches, then runs workers per queue
	// until ctx is done. On return every worker has finished its item.
	Run(ctx context.Context, workers int) error
}

// RunAll runs every controller until ctx is done (or one fails, which
// stops the others) and returns once all have returned.
func RunAll(ctx context.Context, workers int, runners ...Runner) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(runners))
	var wg sync.WaitGroup
	for i, r := range runners {
		wg.Go(func() {
			if errs[i] = r.Run(ctx, workers); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// NewRecorder returns an event recorder writing through the operator's
// event sink, and a function that stops it.
func NewRecorder(ctx context.Context, kube kubernetes.Interface, component string) (record.EventRecorder, func(), error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	if err := citascheme.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(0)
	broadcaster.StartRecordingToSink(newEventSink(ctx, &typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")}, eventWriters, eventQueueDepth))
	return broadcaster.NewRecorder(scheme, corev1.EventSource{Component: component}), broadcaster.Shutdown, nil
}

// Queue is a named, rate-limited queue of object keys; its name labels its
// metrics.
type Queue = workqueue.TypedRateLimitingInterface[cache.ObjectName]

// NewQueue returns a queue named name.
func NewQueue(name string) Queue {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName](),
		workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: name},
	)
}

// processNext takes one key from q and syncs it: forgotten on success,
// requeued rate-limited on error (a conflict, a cache behind the cluster,
// quietly). It returns false once q is shut down.
func processNext(ctx context.Context, q Queue, name string, sync func(context.Context, cache.ObjectName) error) bool {
	key, shutdown := q.Get()
	if shutdown {
		return false
	}
	defer q.Done(key)
	err := sync(ctx, key)
	if err == nil {
		q.Forget(key)
		return true
	}
	if apierrors.IsConflict(err) {
		klog.FromContext(ctx).V(4).Info("Conflict, retrying", "kind", name, "object", key)
	} else {
		utilruntime.HandleErrorWithContext(ctx, err, "Error syncing; requeuing", "kind", name, "object", key)
	}
	q.AddRateLimited(key)
	return true
}

// Work is one queue and the sync that handles its keys.
type Work struct {
	Name  string
	Queue Queue
	Sync  func(context.Context, cache.ObjectName) error
}

// RunQueues waits for synced, then runs workers per queue until ctx is
// done; then it drains the queues and returns once every worker finished.
func RunQueues(ctx context.Context, workers int, synced []cache.InformerSynced, work []Work) error {
	defer utilruntime.HandleCrash()
	logger := klog.FromContext(ctx)
	logger.Info("Waiting for informer caches to sync")
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("caches did not sync")
	}
	var wg sync.WaitGroup
	for _, w := range work {
		for range workers {
			wg.Go(func() {
				for processNext(ctx, w.Queue, w.Name, w.Sync) {
				}
			})
		}
	}
	logger.Info("Started workers", "queues", len(work), "workersPerQueue", workers)
	<-ctx.Done()
	logger.Info("Shutting down workers")
	for _, w := range work {
		w.Queue.ShutDownWithDrain()
	}
	wg.Wait()
	return nil
}
