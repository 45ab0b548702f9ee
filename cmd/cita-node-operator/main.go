// Command cita-node-operator runs the operations on CITA-Cloud nodes that
// users ask for with citacloud.rivtower.com/v1 custom resources.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/cita-cloud/cita-node-operator/pkg/controller"
	"github.com/cita-cloud/cita-node-operator/pkg/controller/citanode"
	"github.com/cita-cloud/cita-node-operator/pkg/controller/operations"
	"github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned"
)

type options struct {
	nodes             citanode.Config
	kubeconfig        string
	namespace         string
	workers           int
	qps               float64
	burst             int
	resync            time.Duration
	leaderElect       bool
	leaderElectNS     string
	leaderElectID     string
	leaseDuration     time.Duration
	renewDeadline     time.Duration
	retryPeriod       time.Duration
	metricsAddr       string
	healthAddr        string
	operations.Config // job image, timeouts
}

func parseFlags(args []string) (*options, error) {
	o := &options{Config: operations.DefaultConfig(), nodes: citanode.DefaultConfig()}
	fs := flag.NewFlagSet("cita-node-operator", flag.ContinueOnError)
	klog.InitFlags(fs)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: in-cluster config (or $KUBECONFIG)")
	fs.StringVar(&o.namespace, "namespace", "", "namespace to watch; empty: all namespaces")
	fs.IntVar(&o.workers, "workers", 32, "workers per operation kind")
	fs.Float64Var(&o.qps, "kube-api-qps", 200, "client QPS to the apiserver")
	fs.IntVar(&o.burst, "kube-api-burst", 400, "client burst to the apiserver")
	fs.DurationVar(&o.resync, "resync-period", 10*time.Minute, "informer resync period")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "run only while holding a Lease, so that several replicas can run")
	fs.StringVar(&o.leaderElectNS, "leader-elect-namespace", "", "namespace of the Lease; empty: the pod's namespace, else --namespace, else default")
	fs.StringVar(&o.leaderElectID, "leader-elect-id", "cita-node-operator", "name of the Lease")
	fs.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "lease duration")
	fs.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "renew deadline")
	fs.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second, "retry period")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of /metrics; 0 disables")
	fs.StringVar(&o.healthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 disables")
	fs.StringVar(&o.JobImage, "job-image", o.JobImage, "image of the operations' Jobs (cita-node-job + cloud-op)")
	fs.DurationVar(&o.StopGracePeriod, "stop-grace-period", o.StopGracePeriod, "delete a stopped node's pods still present this long after the stop, once its workload's controller has acted on the stop")
	fs.DurationVar(&o.StopTimeout, "stop-timeout", o.StopTimeout, "fail an operation whose node has not stopped after this")
	fs.DurationVar(&o.JobStartTimeout, "job-start-timeout", o.JobStartTimeout, "fail an operation whose Job pod cannot start for this long")
	fs.DurationVar(&o.JobActiveDeadline, "job-deadline", o.JobActiveDeadline, "active deadline of an operation's Job")
	fs.DurationVar(&o.StartReadyTimeout, "start-ready-timeout", o.StartReadyTimeout, "fail an operation whose node, started again after its work succeeded, has not every pod Ready after this")
	fs.DurationVar(&o.nodes.Poll.Interval, "citanode-poll-interval", o.nodes.Poll.Interval, "how often each CitaNode's node API is asked for its height, peers and sync state")
	fs.DurationVar(&o.nodes.Poll.Timeout, "citanode-poll-timeout", o.nodes.Poll.Timeout, "timeout of one poll of a node's API")
	fs.IntVar(&o.nodes.Poll.Concurrency, "citanode-poll-concurrency", o.nodes.Poll.Concurrency, "polls of node APIs in flight at most")
	fs.DurationVar(&o.nodes.Poll.StallWindow, "citanode-stall-window", o.nodes.Poll.StallWindow, "a Ready CitaNode whose height has not grown for this long is reported stalled (Progressing=False, a Warning event)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.workers < 1 {
		return nil, errors.New("--workers must be at least 1")
	}
	if o.JobImage == "" {
		return nil, errors.New("--job-image must not be empty")
	}
	return o, nil
}

// defaultGCPercent trades a little of the operator's CPU (milliseconds per
// operation, next to the apiserver's hundred) for a smaller heap: with 1000
// CRs stored the operator stays under 60 MiB (bench/RESULTS.md). GOGC in
// the environment still wins.
const defaultGCPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := klog.FromContext(ctx)
	if err := run(ctx, o); err != nil {
		logger.Error(err, "Exiting")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func restConfig(o *options) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.UserAgent = "cita-node-operator"
	return cfg, nil
}

// builtinConfig is cfg for the built-in kinds (pods, StatefulSets, Jobs,
// PVCs, events, leases): protobuf both ways, as the kube-controller-manager
// speaks. Encoding and decoding protobuf costs the apiserver and the
// operator a fraction of JSON's, and the apiserver encodes each watch event
// once per encoding, so the operator shares the encodings it makes for the
// control plane's own controllers. Custom resources have no protobuf form:
// their clientset keeps JSON.
func builtinConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return cfg
}

func run(ctx context.Context, o *options) error {
	logger := klog.FromContext(ctx)
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	workqueue.SetProvider(controller.NewQueueMetrics(registry))

	cfg, err := restConfig(o)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.Wrap(newRequestMetrics(registry).wrap)
	kube, err := kubernetes.NewForConfig(builtinConfig(cfg))
	if err != nil {
		return err
	}
	cita, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}

	var ready atomic.Bool
	var elector *leaderelection.LeaderElector
	serve(ctx, o.healthAddr, "health", healthMux(&ready, func() error {
		if elector == nil {
			return nil
		}
		return elector.Check(20 * time.Second)
	}))
	serve(ctx, o.metricsAddr, "metrics", metricsMux(registry))

	// A controller that stops while the process leads (its caches never
	// synced, say) ends the process, releasing the lease to a standby,
	// rather than leaving it leading with nothing running.
	leadCtx, stopLeading := context.WithCancel(ctx)
	defer stopLeading()
	stopped := make(chan error, 1)
	lead := func(ctx context.Context) {
		if err := runControllers(ctx, o, kube, cita, registry, &ready); err != nil && ctx.Err() == nil {
			logger.Error(err, "Controller stopped")
			stopped <- err
			stopLeading()
		}
	}
	controllerStopped := func() error {
		select {
		case err := <-stopped:
			return err
		default:
			return nil
		}
	}
	if !o.leaderElect {
		lead(leadCtx)
		return controllerStopped()
	}

	id, err := leaderIdentity()
	if err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  leaseMeta(o),
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	elector, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.leaseDuration,
		RenewDeadline:   o.renewDeadline,
		RetryPeriod:     o.retryPeriod,
		ReleaseOnCancel: true,
		Name:            o.leaderElectID,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: lead,
			OnStoppedLeading: func() { logger.Info("No longer the leader", "identity", id) },
			OnNewLeader:      func(leader string) { logger.Info("Leader", "identity", leader) },
		},
	})
	if err != nil {
		return err
	}
	ready.Store(true) // a standby is ready: it is waiting for the lease
	elector.Run(leadCtx)
	if err := controllerStopped(); err != nil {
		return err
	}
	if ctx.Err() == nil {
		return errors.New("lost the leader lease")
	}
	return nil
}

// runControllers builds the informers once, hands each controller what it
// needs and runs them all while this process leads.
func runControllers(ctx context.Context, o *options, kube kubernetes.Interface, cita versioned.Interface, metrics prometheus.Registerer, ready *atomic.Bool) error {
	ready.Store(false)
	recorder, stopEvents, err := controller.NewRecorder(ctx, kube, "cita-node-operator")
	if err != nil {
		return err
	}
	defer stopEvents()
	deps := controller.Deps{
		Kube: kube, Cita: cita,
		Informers: controller.NewInformers(kube, cita, o.namespace, o.resync),
		Recorder:  recorder, Clock: clock.RealClock{}, Metrics: metrics,
	}
	ops, err := operations.New(deps, o.Config)
	if err != nil {
		return err
	}
	nodes, err := citanode.New(deps, o.nodes)
	if err != nil {
		return err
	}
	// The informers stop with the controllers, whatever stopped them.
	ctx, cancel := context.WithCancel(ctx)
	deps.Informers.Start(ctx)
	defer deps.Informers.Shutdown()
	defer cancel()
	go func() {
		deps.Informers.WaitForCacheSync(ctx)
		ready.Store(true)
	}()
	return controller.RunAll(ctx, o.workers, ops, nodes)
}

func leaseMeta(o *options) metav1.ObjectMeta {
	ns := o.leaderElectNS
	if ns == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = string(b)
		}
	}
	if ns == "" {
		ns = o.namespace
	}
	if ns == "" {
		ns = "default"
	}
	return metav1.ObjectMeta{Name: o.leaderElectID, Namespace: ns}
}

func healthMux(ready *atomic.Bool, leader func() error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := leader(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "caches not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func metricsMux(registry *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}

// serve runs an HTTP server until ctx is done; addr "0" disables it.
func serve(ctx context.Context, addr, name string, handler http.Handler) {
	if addr == "" || addr == "0" {
		return
	}
	logger := klog.FromContext(ctx)
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(err, "Server failed", "server", name, "address", addr)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
}

// leaderIdentity names this process in the Lease: its pod (POD_NAME, set by
// the chart) or host name, and a UUID. The UUID, not the pid: in a
// container the pid is always 1, and on the host network every pod of a
// machine has the machine's host name, so a replacement pod started beside
// the old one would take the old one's identity and both would lead.
func leaderIdentity() (string, error) {
	name := os.Getenv("POD_NAME")
	if name == "" {
		var err error
		if name, err = os.Hostname(); err != nil {
			return "", err
		}
	}
	return name + "_" + string(uuid.NewUUID()), nil
}
