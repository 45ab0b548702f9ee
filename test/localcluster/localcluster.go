// Package localcluster runs a real Kubernetes control plane on loopback for the
// e2e suite and the demo: etcd, kube-apiserver (RBAC on), kube-controller-manager,
// kube-scheduler and kwok, whose fake nodes run pods without containers. A
// StorageClass backed by an in-process provisioner gives every PVC a directory
// under the work dir, so that a runner can execute chosen pods for real (see
// Options.LeavePodsWithLabel) with their volumes bind-mounted.
//
// The binaries come from bin/, built by hack/tools/build.sh.
//
// What a runner takes over for the pods kwok leaves alone (LeavePodsWithLabel,
// LeavePodsOnNodes): the scheduler still binds them to a kwok node, which stays
// Ready; everything a kubelet would do afterwards is the runner's: writing the
// pod status (phase, containerStatuses with the exit code and termination
// message) and, once a pod has a deletionTimestamp, deleting it with a grace
// period of 0. Their volumes: PV.spec.hostPath.path of each bound claim, see
// VolumeDir.
package localcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// JobPodLabel is set by the Job controller on every pod of a Job. Passed as
// Options.LeavePodsWithLabel it hands all Job pods to a runner while kwok keeps
// simulating every other pod (e.g. the blockchain nodes' StatefulSets).
const JobPodLabel = "batch.kubernetes.io/job-name"

// Binaries are the files Start needs in Options.BinDir.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// Options configure Start. The zero value is usable once bin/ is built.
type Options struct {
	// BinDir holds the binaries and kwok-stages/; default: the bin/ of the
	// repository containing the working directory (see DefaultBinDir).
	BinDir string
	// WorkDir receives certificates, kubeconfigs, etcd data, logs/ and volumes/.
	// Default: a new temporary directory, removed by Stop. A given WorkDir is
	// emptied of an earlier run's files by Start and kept by Stop.
	WorkDir string
	// Nodes is the number of kwok nodes, named kwok-node-0, kwok-node-1, ...; default 1.
	Nodes int
	// LeavePodsWithLabel: kwok does not touch pods carrying this label key (with
	// a non-empty value): no status, no deletion. Empty: kwok runs every pod.
	LeavePodsWithLabel string
	// LeavePodsOnNodes are extra kwok nodes (created, Ready, schedulable) whose
	// pods kwok does not touch either.
	LeavePodsOnNodes []string
	// StorageClassName of the default, provisioning StorageClass; default "standard".
	StorageClassName string
	// APIServerProfiling serves the apiserver's /debug/pprof (to admins), for
	// benchmarks that look at where its CPU goes.
	APIServerProfiling bool
	// RealNode, when set, runs one real node (containerd, runc and a
	// kubelet) instead of kwok and its nodes: Nodes, LeavePodsWithLabel and
	// LeavePodsOnNodes are then ignored. See RealNode.
	RealNode *RealNode
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// Cluster is a running control plane. Stop it, also on failure (t.Cleanup).
type Cluster struct {
	// Kubeconfig is the path of an admin (system:masters) kubeconfig, written
	// once the cluster is ready.
	Kubeconfig string
	// WorkDir, LogDir (one <component>.log each) and VolumesDir (the host
	// directories of provisioned volumes, <namespace>/<pvc>-<uid>).
	WorkDir, LogDir, VolumesDir string
	// Server is the apiserver's URL; ControllerManager and Scheduler the
	// secure ports of the other two (self-signed serving certificates; the
	// admin credentials are accepted, e.g. for /metrics).
	Server, ControllerManager, Scheduler string
	// NodeNames are all nodes created, kwok-simulated ones first.
	NodeNames []string
	// APIServerPort is the apiserver's port on 127.0.0.1 (for pods on the
	// real node's host network: KUBERNETES_SERVICE_PORT).
	APIServerPort int

	opts        Options
	removeWork  bool
	adminConfig *rest.Config
	certs       *pki
	realNode    *realNode
	cancel      context.CancelFunc
	bg          sync.WaitGroup

	mu       sync.Mutex
	procs    []*Process
	stopped  bool
	stopErrs error
}

// Start brings the control plane up and returns once nodes are Ready and the
// StorageClass is served. On error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	start := time.Now()
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.StorageClassName == "" {
		opts.StorageClassName = "standard"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.BinDir == "" {
		if opts.BinDir, err = DefaultBinDir(); err != nil {
			return nil, err
		}
	}
	if missing := missingBinaries(opts.BinDir, opts.RealNode != nil); len(missing) > 0 {
		return nil, fmt.Errorf("missing in %s: %s (run hack/tools/build.sh)", opts.BinDir, strings.Join(missing, ", "))
	}

	c := &Cluster{opts: opts}
	if opts.WorkDir == "" {
		if c.WorkDir, err = os.MkdirTemp("", "cita-localcluster-"); err != nil {
			return nil, err
		}
		c.removeWork = true
	} else {
		if c.WorkDir, err = filepath.Abs(opts.WorkDir); err != nil {
			return nil, err
		}
	}
	// A kept work dir from an earlier run would mix old etcd data and volumes
	// with new certificates, and its kubeconfig would announce a cluster that
	// is not up yet.
	if !c.removeWork {
		for _, stale := range []string{"kubeconfig", "etcd", "pki", "logs", "volumes", "kwok", "kwok.yaml",
			"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-scheduler.yaml"} {
			if err := os.RemoveAll(filepath.Join(c.WorkDir, stale)); err != nil {
				return nil, err
			}
		}
	}
	c.LogDir = filepath.Join(c.WorkDir, "logs")
	c.VolumesDir = filepath.Join(c.WorkDir, "volumes")
	for _, d := range []string{c.LogDir, c.VolumesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()

	if err := c.startComponents(ctx); err != nil {
		return nil, err
	}
	if err := c.setUpWorkloadSupport(ctx, bgCtx); err != nil {
		return nil, err
	}
	if err := writeKubeconfig(filepath.Join(c.WorkDir, "kubeconfig"), c.adminConfig); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(c.WorkDir, "kubeconfig")
	opts.Logf("local cluster up in %s: KUBECONFIG=%s", time.Since(start).Round(time.Millisecond), c.Kubeconfig)
	return c, nil
}

// DefaultBinDir is $CITA_BIN_DIR, else the bin/ of the nearest parent directory
// holding go.mod and hack/tools/build.sh (the repository root).
func DefaultBinDir() (string, error) {
	if d := os.Getenv("CITA_BIN_DIR"); d != "" {
		return filepath.Abs(d)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "hack", "tools", "build.sh")) {
			return filepath.Join(dir, "bin"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found above the working directory; set CITA_BIN_DIR")
		}
		dir = parent
	}
}

// MissingBinaries lists what Start needs but binDir lacks.
func MissingBinaries(binDir string) []string { return missingBinaries(binDir, false) }

// missingBinaries: for a real node instead of kwok (realNode), kwok is not
// needed; MissingRealNodeBinaries lists what a real node needs besides.
func missingBinaries(binDir string, realNode bool) []string {
	var missing []string
	for _, b := range Binaries {
		if realNode && b == "kwok" {
			continue
		}
		if !fileExists(filepath.Join(binDir, b)) {
			missing = append(missing, b)
		}
	}
	if realNode {
		return missing
	}
	for _, d := range kwokStageDirs {
		if !fileExists(filepath.Join(binDir, "kwok-stages", d)) {
			missing = append(missing, filepath.Join("kwok-stages", d))
		}
	}
	return missing
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// RESTConfig returns a fresh admin config, with client rate limits high enough
// for tests that create many objects.
func (c *Cluster) RESTConfig() *rest.Config {
	return rest.CopyConfig(c.adminConfig)
}

// PIDs of the component processes still running (process group leaders).
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pids []int
	for _, p := range c.procs {
		if done, _ := p.Exited(); !done {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}

// Stop stops every process the cluster started, newest first, and the
// provisioner; it removes the work dir if Start created it. Safe to call twice.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return c.stopErrs
	}
	c.stopped = true
	procs := c.procs
	c.mu.Unlock()

	if c.cancel != nil {
		c.cancel()
	}
	var errs error
	if c.realNode != nil {
		errs = c.realNode.stop()
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(10 * time.Second)
	}
	c.bg.Wait()
	if c.removeWork {
		errs = errors.Join(errs, os.RemoveAll(c.WorkDir))
	}
	c.stopErrs = errs
	return errs
}

// startComponents starts each binary after the one it depends on is serving.
func (c *Cluster) startComponents(ctx context.Context) error {
	pkiDir := filepath.Join(c.WorkDir, "pki")
	certs, err := newPKI(pkiDir)
	if err != nil {
		return err
	}
	c.certs = certs
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	etcdPort, etcdPeerPort, apiPort, kcmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	c.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.APIServerPort = apiPort
	c.ControllerManager = "https://127.0.0.1:" + strconv.Itoa(kcmPort)
	c.Scheduler = "https://127.0.0.1:" + strconv.Itoa(schedPort)

	serving, err := certs.serving("kube-apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)})
	if err != nil {
		return err
	}
	frontProxy, err := certs.frontProxyClient()
	if err != nil {
		return err
	}
	// The apiserver's client certificate to kubelets (logs, exec); a real
	// node's kubelet checks it against the CA.
	kubeletClient, err := certs.client("kube-apiserver-kubelet-client", kubeletClientUser)
	if err != nil {
		return err
	}
	kubeconfigs := map[string]string{}
	for _, id := range []struct{ name, user, group string }{
		{"admin", "localcluster-admin", "system:masters"},
		{"kube-controller-manager", "system:kube-controller-manager", ""},
		{"kube-scheduler", "system:kube-scheduler", ""},
		// kwok writes node and pod status, leases and events: act as admin.
		{"kwok", "kwok", "system:masters"},
	} {
		var groups []string
		if id.group != "" {
			groups = []string{id.group}
		}
		kp, err := certs.client(id.name, id.user, groups...)
		if err != nil {
			return err
		}
		cfg := &rest.Config{
			Host: c.Server,
			TLSClientConfig: rest.TLSClientConfig{
				CAData:   certs.ca.certPEM,
				CertData: kp.certPEM,
				KeyData:  kp.keyPEM,
			},
			QPS:   500,
			Burst: 1000,
		}
		path := filepath.Join(pkiDir, id.name+".kubeconfig")
		if err := writeKubeconfig(path, cfg); err != nil {
			return err
		}
		kubeconfigs[id.name] = path
		if id.name == "admin" {
			c.adminConfig = cfg
		}
	}

	bin := func(name string) string { return filepath.Join(c.opts.BinDir, name) }
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeerPort)
	if err := c.run("etcd", bin("etcd"), nil,
		"--name=localcluster",
		"--data-dir="+filepath.Join(c.WorkDir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=localcluster="+peerURL,
		// Durability is worthless for a throwaway cluster; fsync dominates latency.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "etcd", etcdURL+"/health", nil); err != nil {
		return err
	}

	if err := c.run("kube-apiserver", bin("kube-apiserver"), nil,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--etcd-servers="+etcdURL,
		"--cert-dir="+filepath.Join(c.WorkDir, "kube-apiserver"),
		"--tls-cert-file="+serving.CertFile,
		"--tls-private-key-file="+serving.KeyFile,
		"--client-ca-file="+certs.ca.CertFile,
		// Request-header auth as in a real cluster: without it kcm and the
		// scheduler log a missing CA bundle again and again.
		"--requestheader-client-ca-file="+certs.frontProxyCA.CertFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+frontProxy.CertFile,
		"--proxy-client-key-file="+frontProxy.KeyFile,
		"--kubelet-client-certificate="+kubeletClient.CertFile,
		"--kubelet-client-key="+kubeletClient.KeyFile,
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+certs.ServiceAccountPubKeyFile,
		"--service-account-signing-key-file="+certs.ServiceAccountKeyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		// There is no kube-proxy or endpoint for the kubernetes Service to
		// point at on loopback.
		"--endpoint-reconciler-type=none",
		// kwok nodes would keep the node.kubernetes.io/not-ready taint this
		// plugin puts on new nodes until a kubelet removed it.
		"--disable-admission-plugins=TaintNodesByCondition",
		"--allow-privileged=true",
		"--profiling="+strconv.FormatBool(c.opts.APIServerProfiling),
	); err != nil {
		return err
	}
	if err := c.waitAPIServer(ctx); err != nil {
		return err
	}

	if err := c.run("kube-controller-manager", bin("kube-controller-manager"), nil,
		"--kubeconfig="+kubeconfigs["kube-controller-manager"],
		"--authentication-kubeconfig="+kubeconfigs["kube-controller-manager"],
		"--authorization-kubeconfig="+kubeconfigs["kube-controller-manager"],
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(kcmPort),
		"--cert-dir="+filepath.Join(c.WorkDir, "kube-controller-manager"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+certs.ServiceAccountKeyFile,
		"--root-ca-file="+certs.ca.CertFile,
		"--kube-api-qps=500",
		"--kube-api-burst=1000",
		"--profiling=false",
	); err != nil {
		return err
	}

	schedConfig := filepath.Join(c.WorkDir, "kube-scheduler.yaml")
	// The scheduler's client QPS/burst flags are deprecated; its config file is
	// the supported place for them.
	if err := os.WriteFile(schedConfig, []byte(fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: 500
  burst: 1000
leaderElection:
  leaderElect: false
`, kubeconfigs["kube-scheduler"])), 0o644); err != nil {
		return err
	}
	if err := c.run("kube-scheduler", bin("kube-scheduler"), nil,
		"--config="+schedConfig,
		"--authentication-kubeconfig="+kubeconfigs["kube-scheduler"],
		"--authorization-kubeconfig="+kubeconfigs["kube-scheduler"],
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(schedPort),
		"--cert-dir="+filepath.Join(c.WorkDir, "kube-scheduler"),
		"--profiling=false",
		// A pod first tried while its PVC is still being provisioned can
		// miss the event that binds it and then sits 5 minutes in the
		// unschedulable queue (seen: a StatefulSet pod never scheduled in a
		// test's 60 s). Retry it after 2 s instead; it applies with --config.
		"--pod-max-in-unschedulable-pods-duration=2s",
	); err != nil {
		return err
	}

	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}, Timeout: 2 * time.Second}
	if c.opts.RealNode != nil {
		if err := c.waitHTTP(ctx, "kube-controller-manager", c.ControllerManager+"/healthz", insecure); err != nil {
			return err
		}
		return c.waitHTTP(ctx, "kube-scheduler", c.Scheduler+"/healthz", insecure)
	}
	kwokConfig := filepath.Join(c.WorkDir, "kwok.yaml")
	if err := writeKwokStages(filepath.Join(c.opts.BinDir, "kwok-stages"), kwokConfig,
		c.opts.LeavePodsWithLabel, c.opts.LeavePodsOnNodes); err != nil {
		return err
	}
	kwokHome := filepath.Join(c.WorkDir, "kwok")
	if err := os.MkdirAll(kwokHome, 0o755); err != nil {
		return err
	}
	if err := c.run("kwok", bin("kwok"),
		// kwok reads and writes under $HOME/.kwok; keep it inside the work dir.
		[]string{"HOME=" + kwokHome},
		"--kubeconfig="+kubeconfigs["kwok"],
		"--config="+kwokConfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"="+kwokNodeValue,
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16",
		"--node-ip=127.0.0.1",
	); err != nil {
		return err
	}

	if err := c.waitHTTP(ctx, "kube-controller-manager", c.ControllerManager+"/healthz", insecure); err != nil {
		return err
	}
	return c.waitHTTP(ctx, "kube-scheduler", c.Scheduler+"/healthz", insecure)
}

// kubeletClientUser is the apiserver's user name towards kubelets.
const kubeletClientUser = "kube-apiserver-kubelet-client"

// RunnerNodeTaint keeps the scheduler from placing pods on the
// LeavePodsOnNodes nodes; pods meant for them are bound there by nodeName
// (or tolerate it).
const RunnerNodeTaint = "localcluster.cita.cloud/runner"

// setUpWorkloadSupport creates the StorageClass and nodes and starts the
// provisioner, which runs until Stop.
func (c *Cluster) setUpWorkloadSupport(ctx, bgCtx context.Context) error {
	client, err := kubernetes.NewForConfig(c.adminConfig)
	if err != nil {
		return err
	}
	if _, err := client.StorageV1().StorageClasses().Create(ctx, newStorageClass(c.opts.StorageClassName), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	prov, err := newHostPathProvisioner(client, factory, c.opts.StorageClassName, c.VolumesDir)
	if err != nil {
		return err
	}
	factory.Start(bgCtx.Done())
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		prov.run(bgCtx)
		factory.Shutdown()
	}()

	if c.opts.RealNode != nil {
		if err := kubeletAPIAdmin(ctx, client, kubeletClientUser); err != nil {
			return err
		}
		return c.startRealNode(ctx, c.certs, c.APIServerPort)
	}
	for i := range c.opts.Nodes {
		c.NodeNames = append(c.NodeNames, fmt.Sprintf("kwok-node-%d", i))
	}
	c.NodeNames = append(c.NodeNames, c.opts.LeavePodsOnNodes...)
	for _, name := range c.NodeNames {
		node := newKwokNode(name)
		if slices.Contains(c.opts.LeavePodsOnNodes, name) {
			// Only pods bound to it on purpose run there: the scheduler
			// would otherwise place ordinary pods on a node whose pods kwok
			// leaves alone, and they would never run (seen: a flaky test).
			node.Spec.Taints = []corev1.Taint{{Key: RunnerNodeTaint, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return c.poll(ctx, "nodes Ready", func(ctx context.Context) (bool, error) {
		for _, name := range c.NodeNames {
			node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			if !isNodeReady(node) || slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key != RunnerNodeTaint }) {
				return false, nil
			}
		}
		return true, nil
	})
}

func newKwokNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
			Annotations: map[string]string{kwokNodeAnnotation: kwokNodeValue},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

func isNodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// run starts a component and records it for Stop.
func (c *Cluster) run(name, binary string, env []string, args ...string) error {
	p, err := StartProcess(name, binary, c.LogDir, env, args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		p.Stop(time.Second)
		return errors.New("cluster stopped")
	}
	c.procs = append(c.procs, p)
	return nil
}

// poll retries cond until it holds, ctx ends, a minute passes, or a component
// dies (then the error carries the tail of its log).
func (c *Cluster) poll(ctx context.Context, what string, cond wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.checkProcesses(); err != nil {
			return false, err
		}
		return cond(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

func (c *Cluster) checkProcesses() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if done, err := p.Exited(); done {
			return fmt.Errorf("%s died (%v); end of %s:\n%s", p.Name, err, p.LogFile, tail(p.LogFile, 30))
		}
	}
	return nil
}

func (c *Cluster) waitHTTP(ctx context.Context, what, url string, client *http.Client) error {
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	return c.poll(ctx, what, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

func (c *Cluster) waitAPIServer(ctx context.Context) error {
	client, err := kubernetes.NewForConfig(c.adminConfig)
	if err != nil {
		return err
	}
	return c.poll(ctx, "kube-apiserver", func(ctx context.Context) (bool, error) {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
}

func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["localcluster"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos["localcluster"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
	}
	kc.Contexts["localcluster"] = &clientcmdapi.Context{Cluster: "localcluster", AuthInfo: "localcluster"}
	kc.CurrentContext = "localcluster"
	return clientcmd.WriteToFile(*kc, path)
}

// tail returns the last n lines of a file, for errors about dead components.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// insecureTLS is for the health endpoints of kube-controller-manager and
// kube-scheduler, which serve self-signed certificates on loopback.
func insecureTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback health checks only
}
