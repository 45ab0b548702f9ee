//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/test/fixtures"
	"github.com/cita-cloud/cita-node-operator/test/jobrunner"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// The bench's nodes: one namespace, one chain (Switchover and Restore need
// their nodes in one chain).
const (
	benchNS    = "bench"
	benchChain = "bench-chain"
	// jobImage is what the operator's and the floor's Jobs run; the runner
	// executes bin/cita-node-job whatever the image.
	jobImage = "bench.local/cita-node-operator-job:bench"
	// fallbackHeight is an ordinary height for the runner's fake cloud-op
	// (none of its test hooks).
	fallbackHeight = 100
)

type env struct {
	cfg     *config
	cluster *localcluster.Cluster
	runner  *jobrunner.Runner
	kube    kubernetes.Interface
	cita    versioned.Interface
	restCfg *rest.Config
	nodes   []string

	kubeFactory informers.SharedInformerFactory
	citaFactory citainformers.SharedInformerFactory
	listers     nodeops.Listers
	jobs        cache.Indexer
	notify      *notifier
	crs         *crWatch
	clock       *nodeClock

	op *operator

	setupTimes setupTimes
	stopCtx    context.CancelFunc
}

type setupTimes struct {
	cluster, nodes time.Duration
}

func setUp(ctx context.Context, c *config) (*env, error) {
	e := &env{cfg: c, notify: newNotifier(), clock: newNodeClock()}
	if missing := localcluster.MissingBinaries(c.binDir); len(missing) > 0 {
		return nil, fmt.Errorf("missing in %s: %v (run make tools build)", c.binDir, missing)
	}
	for _, b := range []string{"cita-node-operator", "cita-node-job", "kubectl", "helm"} {
		if _, err := os.Stat(filepath.Join(c.binDir, b)); err != nil {
			return nil, fmt.Errorf("missing %s in %s (run make tools build build)", b, c.binDir)
		}
	}
	start := time.Now()
	var err error
	e.cluster, err = localcluster.Start(ctx, localcluster.Options{
		BinDir:             c.binDir,
		WorkDir:            c.workDir,
		Nodes:              c.kwokNodes,
		LeavePodsWithLabel: localcluster.JobPodLabel,
		APIServerProfiling: c.apiProfile != "",
		Logf:               e.componentLog,
	})
	if err != nil {
		return nil, err
	}
	e.restCfg = e.cluster.RESTConfig()
	e.restCfg.QPS, e.restCfg.Burst = 2000, 4000
	// The floor's client speaks protobuf for built-in kinds, as the operator
	// does: the floor is the best a client could do.
	kubeCfg := rest.CopyConfig(e.restCfg)
	kubeCfg.ContentType = runtime.ContentTypeProtobuf
	kubeCfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	if e.kube, err = kubernetes.NewForConfig(kubeCfg); err != nil {
		return e, err
	}
	if e.cita, err = versioned.NewForConfig(e.restCfg); err != nil {
		return e, err
	}
	if err := e.installOperatorResources(ctx); err != nil {
		return e, err
	}
	if err := e.startRunner(ctx); err != nil {
		return e, err
	}
	if err := e.startInformers(ctx); err != nil {
		return e, err
	}
	e.setupTimes.cluster = time.Since(start)
	logf("control plane, %d kwok machines, job runner and CRDs up in %s; work dir %s", c.kwokNodes, e.setupTimes.cluster.Round(time.Millisecond), e.cluster.WorkDir)

	start = time.Now()
	if err := e.createNodes(ctx); err != nil {
		return e, err
	}
	e.setupTimes.nodes = time.Since(start)
	logf("%d cloud-config nodes running in %s", c.n, e.setupTimes.nodes.Round(time.Millisecond))
	return e, nil
}

// componentLog is the control plane's and the runner's progress, shown
// with -v.
func (e *env) componentLog(format string, args ...any) {
	if e.cfg.verbose {
		logf(format, args...)
	}
}

// startRunner starts the job runner, which executes every Job pod but the
// instant ones (localcluster.InstantJobImage), kwok's to complete.
func (e *env) startRunner(ctx context.Context) error {
	var err error
	e.runner, err = jobrunner.Start(ctx, jobrunner.Options{
		Cluster:    e.cluster,
		JobBinary:  filepath.Join(e.cfg.binDir, "cita-node-job"),
		Logf:       e.componentLog,
		LeaveImage: localcluster.InstantJobImage,
	})
	if err != nil {
		return fmt.Errorf("job runner: %w", err)
	}
	return nil
}

func (e *env) tearDown() {
	if e.op != nil {
		_ = e.op.stop()
	}
	if e.stopCtx != nil {
		e.stopCtx()
	}
	if e.runner != nil {
		e.runner.Stop()
	}
	if e.cluster != nil {
		_ = e.cluster.Stop()
	}
}

// installOperatorResources: the CRDs from the chart, and the chart itself
// (its ServiceAccount and RBAC, the Deployment at 0 replicas), as the e2e
// suite does: the operator then runs as that ServiceAccount.
func (e *env) installOperatorResources(ctx context.Context) error {
	repo := filepath.Dir(e.cfg.binDir)
	if out, err := e.kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(repo, "charts/cita-node-operator/crds")); err != nil {
		return fmt.Errorf("installing CRDs: %v: %s", err, out)
	}
	if out, err := e.kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return fmt.Errorf("CRDs not established: %v: %s", err, out)
	}
	helm := exec.CommandContext(ctx, filepath.Join(e.cfg.binDir, "helm"), "install", "cita-node-operator", filepath.Join(repo, "charts/cita-node-operator"),
		"--namespace", "cita", "--create-namespace", "--set", "replicaCount=0", "--kubeconfig", e.cluster.Kubeconfig)
	if out, err := helm.CombinedOutput(); err != nil {
		return fmt.Errorf("helm install: %v: %s", err, out)
	}
	_, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

func (e *env) kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.cfg.binDir, "kubectl"), append([]string{"--kubeconfig", e.cluster.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startInformers: the bench's own caches of the bench namespace, which the
// floor waits on (no polling: the floor is the best a client can do) and
// which time the operations.
func (e *env) startInformers(ctx context.Context) error {
	ctx, e.stopCtx = context.WithCancel(ctx)
	e.kubeFactory = informers.NewSharedInformerFactoryWithOptions(e.kube, 0, informers.WithNamespace(benchNS))
	e.citaFactory = citainformers.NewSharedInformerFactoryWithOptions(e.cita, 0, citainformers.WithNamespace(benchNS))
	pods := e.kubeFactory.Core().V1().Pods()
	sts := e.kubeFactory.Apps().V1().StatefulSets()
	jobs := e.kubeFactory.Batch().V1().Jobs()
	pvcs := e.kubeFactory.Core().V1().PersistentVolumeClaims()
	e.listers = nodeops.Listers{
		StatefulSets: sts.Lister(),
		Deployments:  e.kubeFactory.Apps().V1().Deployments().Lister(),
		Pods:         pods.Lister(),
		PVCs:         pvcs.Lister(),
		ConfigMapExists: func(string, string) (bool, error) {
			return true, nil
		},
	}
	e.jobs = jobs.Informer().GetIndexer()
	// Every change of a pod wakes whoever waits on its node; of a Job or its
	// pod, on the Job.
	nodeKey := func(obj any) string {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		m, ok := obj.(metav1.Object)
		if !ok {
			return ""
		}
		if n := m.GetLabels()[nodeLabel]; n != "" {
			return "pod/" + n
		}
		// A Job's pod wakes whoever waits on the Job (for its result).
		if j := m.GetLabels()["job-name"]; j != "" {
			return "job/" + j
		}
		return ""
	}
	jobKey := func(obj any) string {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			return "job/" + m.GetName()
		}
		return ""
	}
	if _, err := pods.Informer().AddEventHandler(e.notify.handler(nodeKey)); err != nil {
		return err
	}
	if _, err := jobs.Informer().AddEventHandler(e.notify.handler(jobKey)); err != nil {
		return err
	}
	if _, err := pods.Informer().AddEventHandler(e.clock.handler()); err != nil {
		return err
	}
	_ = pvcs.Informer()
	_ = e.kubeFactory.Apps().V1().Deployments().Informer()
	_ = sts.Informer()
	var err error
	if e.crs, err = newCRWatch(e.citaFactory); err != nil {
		return err
	}
	e.kubeFactory.Start(ctx.Done())
	e.citaFactory.Start(ctx.Done())
	for typ, ok := range e.kubeFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("%v informer did not sync", typ)
		}
	}
	for typ, ok := range e.citaFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("%v informer did not sync", typ)
		}
	}
	return nil
}

func nodeName(i int) string { return fmt.Sprintf("node-%04d", i) }

// createNodes deploys the N cloud-config nodes with bounded parallelism and
// waits until each runs with its PVC bound and its node root seeded.
func (e *env) createNodes(ctx context.Context) error {
	d := &fixtures.Deployer{Client: e.kube, VolumeDir: localcluster.VolumeDir, Timeout: 10 * time.Minute}
	e.nodes = make([]string, e.cfg.n)
	for i := range e.nodes {
		e.nodes[i] = nodeName(i)
	}
	var done atomic.Int64
	err := forEach(ctx, e.nodes, e.cfg.parallel, func(ctx context.Context, name string) error {
		if _, err := d.CloudConfig(ctx, benchNS, benchChain, name); err != nil {
			return err
		}
		if k := done.Add(1); k%100 == 0 {
			logf("  %d nodes running", k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := e.waitNodesRunning(ctx, e.nodes); err != nil {
		return err
	}
	claims := map[string]string{}
	for _, n := range e.nodes {
		node, err := nodeops.Locate(e.listers, nodeops.Target{Namespace: benchNS, Chain: benchChain, Name: n, Method: citav1.DeployMethodCloudConfig})
		if err != nil {
			return err
		}
		claims[node.DataClaim] = n
	}
	e.clock.watchNodes(claims)
	return nil
}

// waitNodesRunning waits until every node's StatefulSet is at 1 replica, its
// lock annotations are gone and its pod runs.
func (e *env) waitNodesRunning(ctx context.Context, nodes []string) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		for _, n := range nodes {
			s, err := e.listers.StatefulSets.StatefulSets(benchNS).Get(n)
			if err != nil || s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
				return false, nil
			}
			if _, locked := nodeops.StoppedReplicas(&nodeops.Workload{Object: s}); locked {
				return false, nil
			}
			p, err := e.listers.Pods.Pods(benchNS).Get(n + "-0")
			if err != nil || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
				return false, nil
			}
		}
		return true, nil
	})
}

// forEach runs f on every item with at most parallel at a time; the first
// error cancels the rest.
func forEach[T any](ctx context.Context, items []T, parallel int, f func(context.Context, T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(parallel, 1))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	return ctx.Err()
}

// notifier wakes goroutines waiting on a key when an informer sees a change
// of an object with that key.
type notifier struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: map[string]chan struct{}{}} }

func (n *notifier) channel(key string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.ch[key]
	if !ok {
		c = make(chan struct{})
		n.ch[key] = c
	}
	return c
}

func (n *notifier) wake(key string) {
	if key == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.ch[key]; ok {
		close(c)
		delete(n.ch, key)
	}
}

func (n *notifier) handler(key func(any) string) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.wake(key(obj)) },
		UpdateFunc: func(_, obj any) { n.wake(key(obj)) },
		DeleteFunc: func(obj any) { n.wake(key(obj)) },
	}
}

// waitFor returns once cond holds, checking it on every change of key (and
// every 5 s, in case a change was missed).
func (n *notifier) waitFor(ctx context.Context, key string, timeout time.Duration, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := n.channel(key)
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
		case <-deadline.C:
			return fmt.Errorf("timed out after %s waiting on %s", timeout, key)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func jobDone(job *batchv1.Job) (done, ok bool) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true, true
		case batchv1.JobFailed:
			return true, false
		}
	}
	return false, false
}

// profileAPIServer records a 30 s CPU profile of the kube-apiserver into
// dir/apiserver-<phase>.pprof, from now on; done waits for it. No dir: no
// profile.
func (e *env) profileAPIServer(ctx context.Context, dir, phase string) (done func()) {
	if dir == "" {
		return func() {}
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		b, err := e.kube.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "30").DoRaw(ctx)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "apiserver-"+phase+".pprof"), b, 0o644)
		}
		if err != nil {
			logf("apiserver profile of the %s: %v", phase, err)
		}
	}()
	return func() { <-ch }
}
