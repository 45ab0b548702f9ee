//go:build linux

package realnode

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/test/fixtures"
	"github.com/cita-cloud/cita-node-operator/test/jobrunner"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// TestOperatorRunsFromItsImage: the chart's Deployment runs the operator's
// image: Ready through its own probes, as user 65532, holding the leader
// Lease under its pod's name (so it reached the apiserver with its
// ServiceAccount's token, under the chart's RBAC), never restarted.
func TestOperatorRunsFromItsImage(t *testing.T) {
	need(t)
	pod := operatorPod(t)
	if pod.Spec.ServiceAccountName != release || pod.Spec.AutomountServiceAccountToken == nil || !*pod.Spec.AutomountServiceAccountToken {
		t.Errorf("serviceAccount %q, automount %v", pod.Spec.ServiceAccountName, pod.Spec.AutomountServiceAccountToken)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.RestartCount != 0 {
			t.Errorf("container %s restarted %d times: %+v", cs.Name, cs.RestartCount, cs.LastTerminationState)
		}
	}
	uids := processUIDs("/cita-node-operator")
	if len(uids) == 0 || uids[0] != 65532 {
		t.Errorf("the operator's process runs as %v, want 65532", uids)
	}
	eventually(t, time.Minute, "the operator holding the leader Lease", func() (bool, string) {
		l, err := env.kube.CoordinationV1().Leases(releaseNS).Get(env.ctx, release, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		holder := ptr.Deref(l.Spec.HolderIdentity, "")
		return strings.HasPrefix(holder, pod.Name), "holder " + holder
	})
}

// processUIDs are the real user ids of the processes running binary.
func processUIDs(binary string) []int {
	var out []int
	for _, pid := range pidsOf(binary) {
		status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
				uid, _ := strconv.Atoi(f[1])
				out = append(out, uid)
			}
		}
	}
	return out
}

// pidsOf lists the processes whose argv[0] is binary.
func pidsOf(binary string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.SplitN(string(cmdline), "\x00", 2)[0] == binary {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestEveryKindOnRealPods: on a node of each deploy method, whose pods are
// real containers, the Jobs run cita-node-job from the job image with the
// Job spec's securityContext, capabilities and mounts, on the node's real
// volume: a Backup, the chain state damaged, a Restore gives the bytes
// back; a ChangeOwner's owners are on disk; a fallback and a snapshot run
// the (fake) cloud-op; after each the node's pods run again and the
// operation saw them Ready.
func TestEveryKindOnRealPods(t *testing.T) {
	need(t)
	d := &fixtures.Deployer{Client: env.kube, VolumeDir: localcluster.VolumeDir, Timeout: 2 * time.Minute}
	for _, method := range []citav1.DeployMethod{citav1.DeployMethodCloudConfig, citav1.DeployMethodHelm, citav1.DeployMethodPython} {
		t.Run(string(method), func(t *testing.T) {
			t.Parallel()
			ns := namespace(t, "real-"+string(method))
			var n *fixtures.Node
			var err error
			switch method {
			case citav1.DeployMethodCloudConfig:
				n, err = d.CloudConfig(env.ctx, ns, "rc", "rc-node0")
			case citav1.DeployMethodHelm:
				var nodes []*fixtures.Node
				nodes, err = d.Helm(env.ctx, ns, "rh", 2)
				if err == nil {
					n = nodes[1]
				}
			case citav1.DeployMethodPython:
				n, err = d.Python(env.ctx, ns, "rp", "rp-node0")
			}
			if err != nil {
				t.Fatal(err)
			}
			root, err := d.Root(env.ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			run := func(kind, name, spec string) {
				t.Helper()
				mustApply(t, fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: %s\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  chain: %s\n  node: %s\n  deployMethod: %s\n%s",
					kind, name, ns, n.Chain, n.Name, method, spec))
				st := waitOp(t, kind, ns, name, 4*time.Minute)
				if st.Status != citav1.PhaseComplete {
					t.Fatalf("%s %s: %s: %s%s", kind, name, st.Status, st.Message, jobStory(ns, name))
				}
				if c := meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady); c == nil || c.Status != metav1.ConditionTrue {
					t.Fatalf("%s %s: NodeReady %+v", kind, name, c)
				}
				if r, err := d.SpecReplicas(env.ctx, n); err != nil || r != n.Replicas {
					t.Fatalf("after %s the node is at %d replicas (%v), want %d", kind, r, err, n.Replicas)
				}
				pods, err := d.Pods(env.ctx, n)
				if err != nil || len(pods) == 0 || !podReady(&pods[0]) {
					t.Fatalf("after %s the node's pod is not Ready: %v %+v", kind, err, pods)
				}
				assertJobPodRanWithoutToken(t, ns, name)
			}

			before := digest(t, root, "chain_data", "data")
			run("Backup", "bk", "")
			// Damage the chain state: a Restore must give back every byte.
			if err := os.WriteFile(filepath.Join(root, "chain_data", "000001.sst"), []byte("damaged"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(root, "data", "state")); err != nil {
				t.Fatal(err)
			}
			run("Restore", "rs", "  backup: bk\n")
			if after := digest(t, root, "chain_data", "data"); !equalDigests(before, after) {
				t.Fatalf("restored chain state differs from the backup's")
			}

			run("ChangeOwner", "co", "  uid: 2000\n  gid: 3000\n")
			_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				info, err := os.Lstat(p)
				if err != nil {
					return err
				}
				if st := info.Sys().(*syscall.Stat_t); st.Uid != 2000 || st.Gid != 3000 {
					t.Errorf("%s owned by %d:%d after ChangeOwner 2000:3000", p, st.Uid, st.Gid)
					return fs.SkipAll
				}
				return nil
			})

			run("BlockHeightFallback", "fb", "  blockHeight: 7\n")
			if b, err := os.ReadFile(filepath.Join(root, "chain_data", jobrunner.FallbackMarker)); err != nil || string(b) != "7\n" {
				t.Errorf("the fake cloud-op's rollback marker: %q, %v", b, err)
			}

			run("Snapshot", "sn", "  blockHeight: 9\n")
			snap, err := localcluster.VolumeDir(env.ctx, env.kube, ns, "sn")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(snap, "9", "chain_data", "000002.sst")); err != nil {
				t.Errorf("snapshot: %v", err)
			}
		})
	}
}

// TestSwitchoverOnRealPods: two cloud-config nodes swap their account
// ConfigMaps; both restart from the swapped template and are seen Ready.
func TestSwitchoverOnRealPods(t *testing.T) {
	need(t)
	d := &fixtures.Deployer{Client: env.kube, VolumeDir: localcluster.VolumeDir, Timeout: 2 * time.Minute}
	ns := namespace(t, "real-switchover")
	var nodes []*fixtures.Node
	for _, name := range []string{"rs-node0", "rs-node1"} {
		n, err := d.CloudConfig(env.ctx, ns, "rs", name)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	before := []string{account(t, ns, "rs-node0"), account(t, ns, "rs-node1")}
	mustApply(t, fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: Switchover\nmetadata:\n  name: sw\n  namespace: %s\nspec:\n  chain: rs\n  sourceNode: rs-node0\n  destNode: rs-node1\n", ns))
	st := waitOp(t, "Switchover", ns, "sw", 4*time.Minute)
	if st.Status != citav1.PhaseComplete || !meta.IsStatusConditionTrue(st.Conditions, citav1.ConditionNodeReady) {
		t.Fatalf("%s: %s %+v", st.Status, st.Message, st.Conditions)
	}
	if after := []string{account(t, ns, "rs-node0"), account(t, ns, "rs-node1")}; after[0] != before[1] || after[1] != before[0] {
		t.Fatalf("accounts %v, were %v", after, before)
	}
	for _, n := range nodes {
		pods, err := d.Pods(env.ctx, n)
		if err != nil || len(pods) != 1 || !podReady(&pods[0]) {
			t.Fatalf("node %s after the switchover: %v %+v", n.Name, err, pods)
		}
		for _, v := range pods[0].Spec.Volumes {
			if v.Name == nodeops.AccountVolume && v.ConfigMap.Name != account(t, ns, n.Name) {
				t.Errorf("pod %s runs with account %s, its template says %s", pods[0].Name, v.ConfigMap.Name, account(t, ns, n.Name))
			}
		}
	}
}

// account is the account ConfigMap in a cloud-config node's template.
func account(t *testing.T, ns, node string) string {
	t.Helper()
	sts, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == nodeops.AccountVolume && v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	t.Fatalf("StatefulSet %s has no %s volume", node, nodeops.AccountVolume)
	return ""
}

// TestOperatorPodKilledMidOperation: while a fallback's Job runs, the
// operator's container is killed (the kubelet restarts it), then its pod
// is deleted (the Deployment replaces it): the operator that comes back
// finishes the operation with its one Job, and the node is back.
func TestOperatorPodKilledMidOperation(t *testing.T) {
	need(t)
	d := &fixtures.Deployer{Client: env.kube, VolumeDir: localcluster.VolumeDir, Timeout: 2 * time.Minute}
	ns := namespace(t, "real-kill")
	n, err := d.CloudConfig(env.ctx, ns, "rk", "rk-node0")
	if err != nil {
		t.Fatal(err)
	}
	first := operatorPod(t)
	mustApply(t, fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: BlockHeightFallback\nmetadata:\n  name: slow\n  namespace: %s\nspec:\n  chain: rk\n  node: rk-node0\n  deployMethod: cloud-config\n  blockHeight: %d\n",
		ns, jobrunner.DelayHeight+20))
	eventually(t, 2*time.Minute, "the fallback's Job pod running", func() (bool, string) {
		pods, err := env.kube.CoreV1().Pods(ns).List(env.ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=slow-fallback"})
		if err != nil || len(pods.Items) == 0 {
			return false, fmt.Sprint(err)
		}
		return pods.Items[0].Status.Phase == corev1.PodRunning, string(pods.Items[0].Status.Phase)
	})

	// The container killed outright: the kubelet starts it again in the
	// same pod.
	pids := pidsOf("/cita-node-operator")
	if len(pids) != 1 {
		t.Fatalf("operator processes %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "the operator's container restarted", func() (bool, string) {
		p, err := env.kube.CoreV1().Pods(releaseNS).Get(env.ctx, first.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount > 0 && podReady(p), "not yet"
	})
	// Then the pod deleted: the Deployment replaces it.
	if err := env.kube.CoreV1().Pods(releaseNS).Delete(env.ctx, first.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "a new operator pod Ready", func() (bool, string) {
		p := operatorPod(t)
		return p.Name != first.Name, p.Name
	})

	st := waitOp(t, "BlockHeightFallback", ns, "slow", 4*time.Minute)
	if st.Status != citav1.PhaseComplete {
		t.Fatalf("%s: %s%s", st.Status, st.Message, jobStory(ns, "slow"))
	}
	jobs, err := env.kube.BatchV1().Jobs(ns).List(env.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != 1 {
		t.Errorf("%d Jobs, want the one", len(jobs.Items))
	}
	if r, err := d.SpecReplicas(env.ctx, n); err != nil || r != 1 {
		t.Errorf("node at %d replicas (%v)", r, err)
	}
	if a, err := d.Annotations(env.ctx, n); err == nil {
		for k := range a {
			if nodeops.IsLockAnnotation(k) {
				t.Errorf("lock annotation %s left", k)
			}
		}
	}
}

// assertJobPodRanWithoutToken: the operation's Job pod ran to success in a
// real container with the operator's pod spec: no API token mounted, root
// with only the capabilities the spec adds, the image the chart names.
func assertJobPodRanWithoutToken(t *testing.T, ns, op string) {
	t.Helper()
	pods, err := env.kube.CoreV1().Pods(ns).List(env.ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Labels["batch.kubernetes.io/job-name"], op+"-") {
			continue
		}
		found = true
		if p.Status.Phase != corev1.PodSucceeded {
			t.Errorf("Job pod %s: %s", p.Name, p.Status.Phase)
		}
		for _, v := range p.Spec.Volumes {
			if v.Projected != nil && strings.HasPrefix(v.Name, "kube-api-access") {
				t.Errorf("Job pod %s mounts an API token (%s)", p.Name, v.Name)
			}
		}
		c := p.Spec.Containers[0]
		if c.Image != jobImage {
			t.Errorf("Job pod %s runs %s, want %s", p.Name, c.Image, jobImage)
		}
		if sc := c.SecurityContext; sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) == 0 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("Job pod %s securityContext %+v: want every capability dropped but those added", p.Name, sc)
		}
	}
	if !found {
		t.Errorf("no Job pod of %s left to look at (TTL 30 s)", op)
	}
}

// --- helpers ---

func namespace(t *testing.T, name string) string {
	t.Helper()
	if _, err := env.kube.CoreV1().Namespaces().Create(env.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func mustApply(t *testing.T, manifest string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.bin, "kubectl"), "--kubeconfig", env.kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v: %s\n%s", err, out, manifest)
	}
}

// waitOp waits until the operation is Complete or Failed and its
// finalizer is gone.
func waitOp(t *testing.T, kind, ns, name string, timeout time.Duration) *citav1.OperationStatus {
	t.Helper()
	var st *citav1.OperationStatus
	eventually(t, timeout, kind+" "+name+" finished", func() (bool, string) {
		var obj metav1.Object
		var err error
		st, obj, err = opStatus(kind, ns, name)
		if err != nil {
			return false, err.Error()
		}
		return (st.Status == citav1.PhaseComplete || st.Status == citav1.PhaseFailed) && len(obj.GetFinalizers()) == 0,
			fmt.Sprintf("%s/%s: %s", st.Status, st.Step, st.Message)
	})
	return st
}

func opStatus(kind, ns, name string) (*citav1.OperationStatus, metav1.Object, error) {
	return fixtures.OperationStatus(env.ctx, env.cita, kind, ns, name)
}

// jobStory is the operation's Job pods and their logs, for a failure.
func jobStory(ns, name string) string {
	pods, err := env.kube.CoreV1().Pods(ns).List(env.ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Name, name+"-") {
			continue
		}
		fmt.Fprintf(&b, "\npod %s: %s %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
		if logs, err := env.kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(env.ctx); err == nil {
			fmt.Fprintf(&b, "\n%s", logs)
		}
	}
	return b.String()
}

// digest maps each file below root/sub to its sha256.
func digest(t *testing.T, root string, subs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range subs {
		_ = filepath.WalkDir(filepath.Join(root, sub), func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			rel, _ := filepath.Rel(root, p)
			out[rel] = hex.EncodeToString(sum[:])
			return nil
		})
	}
	return out
}

func equalDigests(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
