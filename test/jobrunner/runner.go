//go:build linux

// Package jobrunner is a kubelet stand-in for Job pods on the local control
// plane (test/localcluster): kwok simulates the blockchain nodes' pods, and the
// runner really executes the pods kwok leaves alone (those carrying
// localcluster.JobPodLabel) — the operation Jobs' cita-node-job — with their
// volumes bind-mounted at the container paths, and writes their status as a
// kubelet would, so that kube-controller-manager's Job controller marks the
// Jobs Complete or Failed.
//
// Each container runs in a private mount namespace and PID namespace: the
// runner re-executes its own binary (/proc/self/exe; this package's init turns
// it into a helper) with clone(CLONE_NEWPID) and unshare(CLONE_NEWNS) (mount
// propagation private), the helper mounts a tmpfs on /dev (with /dev/null,
// /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty bound back in), a
// tmpfs where mount points must be made (over the deepest existing ancestor of
// a missing mount path: /cita, which the runner creates empty on the host when
// missing; see mountPlan), binds the volumes (read-only ones remounted
// read-only) and the termination-log file, and a /proc of its own, and execs the command — PID 1 of its namespace, so the
// kernel kills whatever it leaves when it ends — with a PATH that starts with
// cita-node-job and a fake cloud-op (see Options.CloudOp). It needs root
// (CAP_SYS_ADMIN).
//
// Use (a test or the demo, as root):
//
//	cluster, err := localcluster.Start(ctx, localcluster.Options{LeavePodsWithLabel: localcluster.JobPodLabel})
//	...
//	runner, err := jobrunner.Start(ctx, jobrunner.Options{Cluster: cluster, JobBinary: "bin/cita-node-job"})
//	...
//	defer cluster.Stop()
//	defer runner.Stop() // first: it kills the containers still running
//
// The fake cloud-op speaks each generation's command line exactly (anything
// else exits 2), rolls back by writing chain_data/FALLBACK_HEIGHT, snapshots by
// copying chain_data and data to P/<h> (current) or writing P/<h> as one
// RocksDB-like statedb (legacy state-backup), restores a legacy snapshot by
// copying P/<h> over data/statedb, and has test hooks by height:
// FailHeight fails with FailReason on stderr, SlowHeight sleeps until SIGTERM,
// HangHeight ignores SIGTERM. Every call is recorded (CloudOpCalls). An image
// whose name contains UnpullableImage never runs (ErrImagePull, then
// ImagePullBackOff).
package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// Options configure Start.
type Options struct {
	// Client talks to the cluster; default: an admin client of Cluster.
	Client kubernetes.Interface
	// Cluster, when set, supplies Client and the default WorkDir.
	Cluster *localcluster.Cluster
	// JobBinary is the cita-node-job binary (e.g. bin/cita-node-job); the
	// container finds it on PATH as cita-node-job. Required.
	JobBinary string
	// CloudOp is the generation of the fake cloud-op on PATH:
	// jobargs.CloudOpLegacy or jobargs.CloudOpCurrent (default). SetCloudOp
	// changes it for containers started later.
	CloudOp string
	// WorkDir holds the tool directories, per-pod files and logs/; default:
	// <Cluster.WorkDir>/jobrunner (kept), else a temporary directory removed
	// by Stop.
	WorkDir string
	// Label selects the pods the runner executes (any non-empty value);
	// default localcluster.JobPodLabel. It must be the cluster's
	// LeavePodsWithLabel.
	Label string
	// Nodes: pods bound to these nodes are executed too, whatever their
	// labels (the cluster's LeavePodsOnNodes).
	Nodes []string
	// KillGrace is the longest wait between SIGTERM and SIGKILL when a running
	// pod is deleted (its deletionGracePeriodSeconds is used when shorter, and
	// 0 means SIGKILL at once, as for a forced deletion); default 10s,
	// negative: always SIGKILL at once.
	KillGrace time.Duration
	// Logf reports what the runner does; nil is quiet.
	Logf func(format string, args ...any)
	// BeforeStart, if set, is called just before a pod's container process
	// starts, as a kubelet would start it: tests check there what must hold
	// while a Job runs (its node is stopped).
	BeforeStart func(namespace, name string)
	// LeaveImage: pods whose first container runs this image are someone
	// else's to run (the bench's instant Jobs, which kwok completes).
	LeaveImage string
}

// Runner executes pods until Stop.
type Runner struct {
	opts     Options
	client   kubernetes.Interface
	workDir  string
	rmWork   bool
	toolDirs map[string]string
	calls    string
	spawner  *spawner
	protect  []string

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	factory informers.SharedInformerFactory

	mu       sync.Mutex
	cloudOp  string
	pods     map[types.UID]*podRun
	started  int
	stopped  bool
	stopOnce sync.Once
}

// Run is what the runner knows of one pod it took over.
type Run struct {
	Namespace, Name string
	UID             types.UID
	// Started: the container's process was started (PID); never for an
	// "unpullable" image or a pod whose volumes could not be prepared.
	Started   bool
	PID       int
	CloudOp   string
	StartedAt time.Time
	// Finished: the process exited; ExitCode as a kubelet reports it (128+n
	// for signal n), Reason (Completed, Error, StartError, ...) and Message
	// (the termination message).
	Finished   bool
	FinishedAt time.Time
	ExitCode   int
	Reason     string
	Message    string
	// Killed: the process was signalled because the pod was deleted (or the
	// runner stopped).
	Killed bool
	// Waiting is the container's waiting reason while it is not running
	// (ErrImagePull, ImagePullBackOff, ContainerCreating).
	Waiting string
	// LogFile holds the container's stdout and stderr.
	LogFile string

	seq int
}

// Start checks that containers can be run here (root, mount namespaces),
// writes the fake cloud-ops and starts watching pods. Stop it (t.Cleanup).
func Start(ctx context.Context, opts Options) (*Runner, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Label == "" {
		opts.Label = localcluster.JobPodLabel
	}
	switch {
	case opts.KillGrace == 0:
		opts.KillGrace = 10 * time.Second
	case opts.KillGrace < 0:
		opts.KillGrace = 0
	}
	if opts.CloudOp == "" {
		opts.CloudOp = jobargs.CloudOpCurrent
	}
	if err := checkGeneration(opts.CloudOp); err != nil {
		return nil, err
	}
	if opts.JobBinary == "" {
		return nil, errors.New("jobrunner: Options.JobBinary is required")
	}
	jobBinary, err := filepath.Abs(opts.JobBinary)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(jobBinary); err != nil {
		return nil, fmt.Errorf("jobrunner: job binary: %w", err)
	} else if fi.Mode()&0o111 == 0 || fi.IsDir() {
		return nil, fmt.Errorf("jobrunner: job binary %s is not an executable file", jobBinary)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("jobrunner: must run as root (it mounts the pods' volumes in private mount namespaces)")
	}
	client := opts.Client
	if client == nil {
		if opts.Cluster == nil {
			return nil, errors.New("jobrunner: Options.Client or Options.Cluster is required")
		}
		if client, err = kubernetes.NewForConfig(opts.Cluster.RESTConfig()); err != nil {
			return nil, err
		}
	}

	r := &Runner{opts: opts, client: client, cloudOp: opts.CloudOp, pods: map[types.UID]*podRun{}}
	switch {
	case opts.WorkDir != "":
		r.workDir, err = filepath.Abs(opts.WorkDir)
	case opts.Cluster != nil:
		r.workDir = filepath.Join(opts.Cluster.WorkDir, "jobrunner")
	default:
		r.workDir, err = os.MkdirTemp("", "cita-jobrunner-")
		r.rmWork = true
	}
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "pods"} {
		if err := os.MkdirAll(filepath.Join(r.workDir, d), 0o755); err != nil {
			return nil, err
		}
	}
	r.calls = filepath.Join(r.workDir, "cloud-op.calls")
	if r.toolDirs, err = writeToolDirs(r.workDir, jobBinary, r.calls); err != nil {
		return nil, err
	}
	r.protect = protectedPaths(append([]string{r.workDir, jobBinary},
		strings.Split(r.containerPath(jobargs.CloudOpCurrent), ":")...)...)
	r.spawner = newSpawner()
	if err := r.selfTest(); err != nil {
		r.spawner.stop()
		r.cleanWork()
		return nil, err
	}

	r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var tweak informers.SharedInformerOption = informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = opts.Label
	})
	if len(opts.Nodes) > 0 {
		// An OR of label and node is no selector: watch every pod, filter here.
		tweak = informers.WithTweakListOptions(func(*metav1.ListOptions) {})
	}
	r.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, tweak)
	podInformer := r.factory.Core().V1().Pods().Informer()
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.onPod(obj) },
		UpdateFunc: func(_, obj any) { r.onPod(obj) },
		DeleteFunc: r.onPodDeleted,
	}); err != nil {
		r.Stop()
		return nil, err
	}
	r.factory.Start(r.ctx.Done())
	for typ, ok := range r.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			r.Stop()
			return nil, fmt.Errorf("jobrunner: %v informer did not sync", typ)
		}
	}
	opts.Logf("jobrunner: running pods with label %s (cloud-op %s), work dir %s", opts.Label, opts.CloudOp, r.workDir)
	return r, nil
}

func checkGeneration(gen string) error {
	if gen != jobargs.CloudOpLegacy && gen != jobargs.CloudOpCurrent {
		return fmt.Errorf("jobrunner: cloud-op generation %q: want %q or %q", gen, jobargs.CloudOpLegacy, jobargs.CloudOpCurrent)
	}
	return nil
}

// selfTest runs `cloud-op --help` as a container would (private namespace,
// private /dev), so that a host where that cannot work fails Start, not every
// Job.
func (r *Runner) selfTest() error {
	logFile := filepath.Join(r.workDir, "logs", "self-test.log")
	out, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd, err := r.spawner.start(&containerSpec{
		Argv: []string{"cloud-op", "--help"},
		Env:  []string{"PATH=" + r.containerPath(jobargs.CloudOpCurrent)},
		Path: r.containerPath(jobargs.CloudOpCurrent),
	}, out)
	if err != nil {
		return fmt.Errorf("jobrunner: cannot run a container here: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		b, _ := os.ReadFile(logFile)
		return fmt.Errorf("jobrunner: self-test container: %w: %s", err, b)
	}
	return nil
}

// containerPath is the PATH of a container: the tools of generation gen first.
func (r *Runner) containerPath(gen string) string {
	return r.toolDirs[gen] + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// Stop kills every container still running (SIGKILL, no status written) and
// stops watching. Safe to call twice.
func (r *Runner) Stop() {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopped = true
		r.mu.Unlock()
		if r.cancel != nil {
			r.cancel()
		}
		r.wg.Wait()
		if r.factory != nil {
			r.factory.Shutdown()
		}
		r.spawner.stop()
		r.cleanWork()
	})
}

func (r *Runner) cleanWork() {
	if r.rmWork {
		_ = os.RemoveAll(r.workDir)
	}
}

// WorkDir is where the runner keeps its files (logs/ has one log per container).
func (r *Runner) WorkDir() string { return r.workDir }

// SetCloudOp switches the fake cloud-op generation for containers started
// from now on.
func (r *Runner) SetCloudOp(gen string) error {
	if err := checkGeneration(gen); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cloudOp = gen
	return nil
}

// StartedContainers is how many container processes the runner has started.
func (r *Runner) StartedContainers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started
}

// Runs returns what the runner knows of every pod it took over, oldest first.
func (r *Runner) Runs() []Run {
	r.mu.Lock()
	prs := make([]*podRun, 0, len(r.pods))
	for _, p := range r.pods {
		prs = append(prs, p)
	}
	r.mu.Unlock()
	runs := make([]Run, 0, len(prs))
	for _, p := range prs {
		runs = append(runs, p.snapshot())
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].seq < runs[j].seq })
	return runs
}

// PodRun returns the run of a pod, by namespace and name (the latest if the
// name was reused).
func (r *Runner) PodRun(namespace, name string) (Run, bool) {
	runs := r.Runs()
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].Namespace == namespace && runs[i].Name == name {
			return runs[i], true
		}
	}
	return Run{}, false
}

// Log returns the output of a pod's container so far.
func (r *Runner) Log(namespace, name string) (string, error) {
	run, ok := r.PodRun(namespace, name)
	if !ok || run.LogFile == "" {
		return "", fmt.Errorf("jobrunner: no container of pod %s/%s", namespace, name)
	}
	b, err := os.ReadFile(run.LogFile)
	return string(b), err
}

// CloudOpCalls returns every run of the fake cloud-op (other than --help), in
// order, with the generation that answered it.
func (r *Runner) CloudOpCalls() ([]CloudOpCall, error) {
	return readCloudOpCalls(r.calls)
}

// ours reports whether the runner executes pod.
func (r *Runner) ours(pod *corev1.Pod) bool {
	if r.opts.LeaveImage != "" && len(pod.Spec.Containers) > 0 && pod.Spec.Containers[0].Image == r.opts.LeaveImage {
		return false
	}
	return pod.Labels[r.opts.Label] != "" || (pod.Spec.NodeName != "" && slices.Contains(r.opts.Nodes, pod.Spec.NodeName))
}

func (r *Runner) onPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || !r.ours(pod) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	p := r.pods[pod.UID]
	if p == nil {
		// Not bound yet: the scheduler will; an unbound pod being deleted is
		// the apiserver's to remove (no kubelet owns it).
		if pod.Spec.NodeName == "" {
			return
		}
		p = r.newPodRun(pod)
		r.pods[pod.UID] = p
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			p.loop(pod.DeepCopy())
		}()
	}
	if pod.DeletionTimestamp != nil {
		grace := r.opts.KillGrace
		if s := pod.DeletionGracePeriodSeconds; s != nil && time.Duration(*s)*time.Second < grace {
			grace = time.Duration(*s) * time.Second
		}
		p.requestDelete(grace)
	}
}

func (r *Runner) onPodDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	r.mu.Lock()
	p := r.pods[pod.UID]
	r.mu.Unlock()
	if p != nil {
		p.markGone()
	}
}

var seqCounter struct {
	sync.Mutex
	n int
}

func nextSeq() int {
	seqCounter.Lock()
	defer seqCounter.Unlock()
	seqCounter.n++
	return seqCounter.n
}
