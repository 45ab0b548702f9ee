package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// RealNode runs one real node in place of kwok's: Debian's containerd with
// runc, and a kubelet built from the pinned Kubernetes (bin/kubelet, see
// hack/tools/kubelet.sh), so pods really run: images from tarballs imported
// into containerd (nothing is pulled), hostPath volumes from the
// provisioner, ServiceAccount tokens, probes, logs and exec.
//
// This machine's limits shape it (a VM without systemd, cgroup v1, root
// without CAP_SYS_RESOURCE, no traffic beyond loopback):
//   - containerd clamps oom_score_adj (restrict_oom_score_adj): the kubelet
//     asks for negative values, which root here may not set, and no sandbox
//     would start;
//   - the kubelet runs on cgroup v1 (failCgroupV1: false) with the cgroupfs
//     driver, writes no iptables rules, and has no loopback node IP of its
//     own: the Node's addresses are set to 127.0.0.1 once it registers;
//   - a CNI config exists (a bridge with no gateway, no masquerade), or the
//     node stays NotReady, though pods that talk to anything use hostNetwork;
//     there is no kube-proxy or DNS, so Services do not route;
//   - pods reach the apiserver with KUBERNETES_SERVICE_HOST=127.0.0.1 and
//     KUBERNETES_SERVICE_PORT=<APIServerPort> (hostNetwork).
//
// The kubelet and containerd write a few host paths whatever their root
// directories (/var/log/containers, /var/lib/kubelet, /var/lib/cni,
// /run/containerd) and top-level cgroups (kubepods): one real node per
// machine at a time. Stop removes what this node created: processes
// (containers, shims), mounts, cgroups, the bridge and those host paths if
// they did not exist before (see Leftovers).
type RealNode struct {
	// Name of the node; default "real-node".
	Name string
	// SandboxImage is the pause image containerd starts each pod with; it
	// must be among Images (nothing is pulled).
	SandboxImage string
	// Images are image tarballs (OCI layout or docker-archive) imported into
	// containerd before the kubelet starts.
	Images []string
}

// RealNodeBinaries are what a real node needs besides bin/kubelet: Debian's
// containerd, ctr, runc and CNI plugins (hack/tools/node-runtime.sh).
var RealNodeBinaries = []string{"/usr/bin/containerd", "/usr/bin/ctr", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"}

// realNodeBridge is the CNI bridge's name (host-wide, like the cgroups).
const realNodeBridge = "cita-cni0"

// HostPaths are written by the kubelet, containerd's shims and libcni
// outside their root directories; Stop removes those that did not exist
// before the node started.
var HostPaths = []string{"/var/log/containers", "/var/log/pods", "/var/lib/kubelet", "/var/lib/cni", "/run/containerd"}

// realNode is the state of a running real node.
type realNode struct {
	opts        RealNode
	dir         string // <work>/node
	socket      string
	kubelet     *Process
	containerd  *Process
	hostExisted map[string]bool
}

func runcBinary() (string, error) {
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc"} {
		if fileExists(p) {
			return p, nil
		}
	}
	return "", errors.New("runc not found (run hack/tools/node-runtime.sh)")
}

// MissingRealNodeBinaries lists what a real node needs but the machine lacks.
func MissingRealNodeBinaries(binDir string) []string {
	var missing []string
	if !fileExists(filepath.Join(binDir, "kubelet")) {
		missing = append(missing, filepath.Join(binDir, "kubelet"))
	}
	for _, b := range RealNodeBinaries {
		if !fileExists(b) {
			missing = append(missing, b)
		}
	}
	if _, err := runcBinary(); err != nil {
		missing = append(missing, "runc")
	}
	return missing
}

// startRealNode starts containerd, imports the images, starts the kubelet
// and waits until the node is Ready.
func (c *Cluster) startRealNode(ctx context.Context, certs *pki, apiPort int) error {
	o := *c.opts.RealNode
	if o.Name == "" {
		o.Name = "real-node"
	}
	if missing := MissingRealNodeBinaries(c.opts.BinDir); len(missing) > 0 {
		return fmt.Errorf("a real node needs %s (hack/tools/kubelet.sh, hack/tools/node-runtime.sh)", strings.Join(missing, ", "))
	}
	if other, err := otherRealNode(); err != nil || other != "" {
		return errors.Join(err, fmt.Errorf("a real node is already running on this machine (%s): one at a time", other))
	}
	n := &realNode{opts: o, dir: filepath.Join(c.WorkDir, "node"), hostExisted: map[string]bool{}}
	for _, p := range HostPaths {
		n.hostExisted[p] = fileExists(p)
	}
	c.realNode = n
	n.socket = filepath.Join(n.dir, "containerd", "containerd.sock")
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet/root", "kubelet/pki", "kubelet/pod-logs"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	runc, err := runcBinary()
	if err != nil {
		return err
	}
	containerdConfig := filepath.Join(n.dir, "containerd", "config.toml")
	if err := os.WriteFile(containerdConfig, []byte(fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[7]q
        Root = %[8]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[9]q
`, filepath.Join(n.dir, "containerd", "root"), filepath.Join(n.dir, "containerd", "state"), n.socket, n.socket+".ttrpc",
		filepath.Join(n.dir, "containerd", "opt"), o.SandboxImage, runc, filepath.Join(n.dir, "containerd", "runc"),
		filepath.Join(n.dir, "cni", "net.d"))), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "cni", "net.d", "10-cita.conflist"), []byte(fmt.Sprintf(`{"cniVersion":"0.4.0","name":"cita","plugins":[
 {"type":"bridge","bridge":%q,"isGateway":false,"ipMasq":false,
  "ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.244.0.0/24"}]]}},
 {"type":"loopback"}]}
`, realNodeBridge, filepath.Join(n.dir, "cni", "ipam"))), 0o644); err != nil {
		return err
	}
	if err := c.run("containerd", "/usr/bin/containerd", nil, "--config="+containerdConfig, "--log-level=warn"); err != nil {
		return err
	}
	n.containerd = c.procs[len(c.procs)-1]
	if err := c.poll(ctx, "containerd", func(ctx context.Context) (bool, error) {
		return n.ctr(ctx, "version") == nil, nil
	}); err != nil {
		return err
	}
	for _, img := range o.Images {
		if err := n.ctr(ctx, "images", "import", img); err != nil {
			return fmt.Errorf("importing %s: %w", img, err)
		}
	}

	kubeletClient, err := certs.client("kubelet", "system:node:"+o.Name, "system:nodes")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(n.dir, "kubelet", "kubeconfig")
	if err := writeKubeconfig(kubeconfig, &rest.Config{Host: c.Server, TLSClientConfig: rest.TLSClientConfig{
		CAData: certs.ca.certPEM, CertData: kubeletClient.certPEM, KeyData: kubeletClient.keyPEM}}); err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	kubeletConfig := filepath.Join(n.dir, "kubelet", "config.yaml")
	if err := os.WriteFile(kubeletConfig, []byte(fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
podLogsDir: %q
volumePluginDir: %q
clusterDomain: cluster.local
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%"}
`, ports[0], ports[1], certs.ca.CertFile, n.socket, filepath.Join(n.dir, "kubelet", "pod-logs"), filepath.Join(n.dir, "kubelet", "volume-plugins"))), 0o644); err != nil {
		return err
	}
	if err := c.run("kubelet", filepath.Join(c.opts.BinDir, "kubelet"), nil,
		"--config="+kubeletConfig,
		"--kubeconfig="+kubeconfig,
		"--hostname-override="+o.Name,
		"--root-dir="+filepath.Join(n.dir, "kubelet", "root"),
		"--cert-dir="+filepath.Join(n.dir, "kubelet", "pki"),
		"--v=1",
	); err != nil {
		return err
	}
	n.kubelet = c.procs[len(c.procs)-1]

	client, err := kubernetes.NewForConfig(c.adminConfig)
	if err != nil {
		return err
	}
	// The kubelet refuses a loopback node IP and so reports no address; the
	// apiserver reaches it (logs, exec) at the one set here, which it keeps.
	addresses := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"},{"type":"Hostname","address":%q}]}}`, o.Name)
	if err := c.poll(ctx, "the real node registered", func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Nodes().Patch(ctx, o.Name, types.MergePatchType, []byte(addresses), metav1.PatchOptions{}, "status")
		return err == nil, nil
	}); err != nil {
		return err
	}
	c.NodeNames = append(c.NodeNames, o.Name)
	return c.poll(ctx, "the real node Ready", func(ctx context.Context) (bool, error) {
		node, err := client.CoreV1().Nodes().Get(ctx, o.Name, metav1.GetOptions{})
		if err != nil || !isNodeReady(node) {
			return false, nil
		}
		return !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Effect == corev1.TaintEffectNoSchedule }), nil
	})
}

// kubeletAPIAdmin lets the apiserver's client certificate use the kubelet
// API (logs, exec, port-forward), as kubeadm binds it.
func kubeletAPIAdmin(ctx context.Context, client kubernetes.Interface, user string) error {
	_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "localcluster:kube-apiserver-kubelet-client"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// ctr runs containerd's CLI against this node's containerd, in the CRI's
// namespace.
func (n *realNode) ctr(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/ctr", append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (n *realNode) ctrList(args ...string) []string {
	out, err := exec.Command("/usr/bin/ctr", append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...).Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// stop tears the node down: the kubelet first (nothing restarts a
// container after it), then every container and its shim, containerd, and
// what they leave on the host.
func (n *realNode) stop() error {
	var errs []error
	if n.kubelet != nil {
		n.kubelet.Stop(10 * time.Second)
	}
	if n.containerd != nil {
		if done, _ := n.containerd.Exited(); !done {
			ctx := context.Background()
			for _, id := range n.ctrList("tasks", "list", "--quiet") {
				_ = n.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(n.ctrList("tasks", "list", "--quiet")) > 0 && time.Now().Before(deadline) {
				for _, id := range n.ctrList("tasks", "list", "--quiet") {
					_ = n.ctr(ctx, "tasks", "delete", "--force", id)
				}
				time.Sleep(200 * time.Millisecond)
			}
			for _, id := range n.ctrList("containers", "list", "--quiet") {
				_ = n.ctr(ctx, "containers", "delete", id)
			}
		}
		n.containerd.Stop(10 * time.Second)
	}
	// A shim outlives containerd (it is its own session); those of this
	// containerd name its socket.
	for _, pid := range processesMentioning(n.socket) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	errs = append(errs, unmountUnder(n.dir))
	errs = append(errs, removeCgroups())
	if fileExists("/sys/class/net/" + realNodeBridge) {
		if out, err := exec.Command("ip", "link", "delete", realNodeBridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("deleting the bridge %s: %v: %s", realNodeBridge, err, out))
		}
	}
	for _, p := range HostPaths {
		if !n.hostExisted[p] {
			_ = unmountUnder(p)
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(out)
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func unmountUnder(dir string) error {
	var errs []error
	for range 3 { // a mount may be stacked on another at the same point
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, mp := range mps {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
	}
	return errors.Join(errs...)
}

// nodeCgroups are the top-level cgroups the kubelet (cgroupfs driver) and
// containerd create.
var nodeCgroups = []string{"kubepods", "k8s.io"}

func removeCgroups() error {
	controllers, _ := filepath.Glob("/sys/fs/cgroup/*")
	var errs []error
	for _, ctl := range controllers {
		for _, top := range nodeCgroups {
			root := filepath.Join(ctl, top)
			if !fileExists(root) {
				continue
			}
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			// Deepest first: a cgroup goes only once its children are gone.
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
					errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// otherRealNode names a real node's process already running here, if any.
func otherRealNode() (string, error) {
	for _, pid := range processesMentioning("containerd-shim") {
		return fmt.Sprintf("containerd-shim, pid %d", pid), nil
	}
	if len(mountsUnder("/run/containerd")) > 0 {
		return "mounts under /run/containerd", nil
	}
	return "", nil
}

// Leftovers lists what a real node left on the machine: processes of
// containerd, its shims or the kubelet, mounts below dir, the node's
// cgroups and bridge. Empty after a clean Stop.
func Leftovers(dir string) []string {
	var out []string
	for _, name := range []string{"containerd-shim", "bin/kubelet", "/usr/bin/containerd"} {
		for _, pid := range processesMentioning(name) {
			out = append(out, fmt.Sprintf("process %d (%s)", pid, name))
		}
	}
	for _, mp := range mountsUnder(dir) {
		out = append(out, "mount "+mp)
	}
	controllers, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, ctl := range controllers {
		for _, top := range nodeCgroups {
			if fileExists(filepath.Join(ctl, top)) {
				out = append(out, "cgroup "+filepath.Join(ctl, top))
			}
		}
	}
	if fileExists("/sys/class/net/" + realNodeBridge) {
		out = append(out, "bridge "+realNodeBridge)
	}
	return out
}
