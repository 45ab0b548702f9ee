//go:build linux

package jobrunner_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/datamove"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/test/jobrunner"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// env is one cluster and runner shared by the subtests, each in its own
// namespace.
type env struct {
	client kubernetes.Interface
	runner *jobrunner.Runner
}

// skipUnlessRunnable skips when the control plane binaries are not built or
// this is not root, unless CITA_E2E_REQUIRED=1 (CI), which fails instead.
func skipUnlessRunnable(t *testing.T) string {
	t.Helper()
	binDir, err := localcluster.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	var why string
	if missing := localcluster.MissingBinaries(binDir); len(missing) > 0 {
		why = "local control plane binaries missing in " + binDir + ": " + strings.Join(missing, ", ") + " (build them with hack/tools/build.sh)"
	} else if os.Geteuid() != 0 {
		why = "the job runner needs root (mount namespaces)"
	}
	if why != "" {
		if os.Getenv("CITA_E2E_REQUIRED") == "1" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	return binDir
}

func setUp(t *testing.T) *env {
	binDir := skipUnlessRunnable(t)
	ctx := t.Context()

	// Build the job binary while the control plane starts.
	jobBinary := filepath.Join(t.TempDir(), jobargs.BinaryName)
	var buildErr error
	var buildOut []byte
	var wg sync.WaitGroup
	wg.Go(func() {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", jobBinary, "github.com/cita-cloud/cita-node-operator/cmd/cita-node-job")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildOut, buildErr = cmd.CombinedOutput()
	})

	workDir := t.TempDir()
	cluster, err := localcluster.Start(ctx, localcluster.Options{
		BinDir: binDir, WorkDir: workDir, LeavePodsWithLabel: localcluster.JobPodLabel, Logf: t.Logf,
	})
	wg.Wait()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(workDir, "logs", "*.log"))
		logs2, _ := filepath.Glob(filepath.Join(workDir, "jobrunner", "logs", "*.log"))
		for _, l := range append(logs, logs2...) {
			b, _ := os.ReadFile(l)
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("--- end of %s:\n%s", l, b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build cita-node-job: %v\n%s", buildErr, buildOut)
	}

	runner, err := jobrunner.Start(ctx, jobrunner.Options{
		Cluster: cluster, JobBinary: jobBinary, CloudOp: jobargs.CloudOpCurrent,
		KillGrace: 2 * time.Second, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(runner.Stop)
	client, err := kubernetes.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &env{client: client, runner: runner}
}

// TestJobRunner runs Jobs built by nodeops.Job through the real Job
// controller, with the runner as their kubelet.
func TestJobRunner(t *testing.T) {
	start := time.Now()
	e := setUp(t)
	t.Logf("cluster and runner up in %s", time.Since(start).Round(time.Millisecond))

	t.Run("parallel", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			test func(*testing.T)
		}{
			{"Backup", e.testBackup},
			{"Fallback", e.testFallback},
			{"FallbackFails", e.testFallbackFails},
			{"UnpullableImage", e.testUnpullable},
			{"DeletedPodIsKilled", e.testDeletedPod},
			{"ActiveDeadlineKills", e.testDeadline},
			{"ForceDeletedPodIsKilledAtOnce", e.testForceDeleted},
			{"ContainerView", e.testContainerView},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.test(t)
			})
		}
	})
	// SetCloudOp is runner-wide: after the parallel group.
	t.Run("LegacySnapshot", e.testLegacySnapshot)
	// Every pod's container ran once, but the unpullable one's.
	started := 0
	for _, run := range e.runner.Runs() {
		if run.Started {
			started++
		}
		if want := !strings.Contains(run.Namespace, "unpullable"); run.Started != want {
			t.Errorf("pod %s/%s: started %v, want %v", run.Namespace, run.Name, run.Started, want)
		}
	}
	if n := e.runner.StartedContainers(); n != started || n == 0 {
		t.Errorf("containers started: %d, runs started: %d", n, started)
	}
}

// fixture is one namespace with a node's data PVC (the node root in its
// "node0" sub-directory) and its config ConfigMap.
type fixture struct {
	*env
	t        *testing.T
	ns       string
	nodeRoot string
	node     nodeops.Node
}

func (e *env) newFixture(t *testing.T) *fixture {
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	ctx := t.Context()
	if _, err := e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{env: e, t: t, ns: ns, node: nodeops.Node{DataClaim: "datadir-node0-0", DataSubPath: "node0", ConfigMap: "node0-config"}}
	if _, err := e.client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "node0-config"},
		Data:       map[string]string{jobargs.ConfigFileName: "[network_zenoh]\nport = 40000\n"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.nodeRoot = filepath.Join(f.pvc("datadir-node0-0"), "node0")
	for rel, content := range nodeFiles {
		p := filepath.Join(f.nodeRoot, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// nodeFiles is a small node root: chain state and what makes it this node.
var nodeFiles = map[string]string{
	"chain_data/000001.sst": "blocks", "chain_data/CURRENT": "MANIFEST-000002", "chain_data/MANIFEST-000002": "manifest",
	"data/000003.sst": "state", "data/sub/LOG": "log",
	"kms.db": "keys", "raft-data-dir/wal": "raft",
}

// pvc creates a claim of the default StorageClass and returns its host directory.
func (f *fixture) pvc(name string) string {
	f.t.Helper()
	ctx := f.t.Context()
	if _, err := f.client.CoreV1().PersistentVolumeClaims(f.ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	var dir string
	f.waitFor("pvc "+name+" bound", func(ctx context.Context) (bool, error) {
		d, err := localcluster.VolumeDir(ctx, f.client, f.ns, name)
		dir = d
		return err == nil, nil
	})
	return dir
}

type jobSpec struct {
	name           string
	args           jobargs.Args
	backupClaim    string
	backupReadOnly bool
	image          string
	deadline       int64
}

// createJob creates the Job exactly as the controller builds it (nodeops.Job),
// owned by a ConfigMap standing in for the CR.
func (f *fixture) createJob(s jobSpec) {
	f.t.Helper()
	ctx := f.t.Context()
	owner, err := f.client.CoreV1().ConfigMaps(f.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: s.name + "-owner"}}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	if s.image == "" {
		s.image = "registry.local/cita-node-operator-job:test"
	}
	if s.deadline == 0 {
		s.deadline = 300
	}
	job := nodeops.Job(nodeops.JobRequest{
		Name: s.name, Namespace: f.ns,
		Owner: metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID},
		Image: s.image, Pull: corev1.PullIfNotPresent, Args: s.args, Node: &f.node,
		BackupClaim: s.backupClaim, BackupReadOnly: s.backupReadOnly, ActiveDeadlineSeconds: s.deadline,
	})
	if _, err := f.client.BatchV1().Jobs(f.ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// waitJob waits for the Job's Complete or Failed condition and returns it.
func (f *fixture) waitJob(name string) batchv1.JobConditionType {
	f.t.Helper()
	var got batchv1.JobConditionType
	f.waitFor("job "+name+" finished", func(ctx context.Context) (bool, error) {
		job, err := f.client.BatchV1().Jobs(f.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range job.Status.Conditions {
			if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
				got = c.Type
				if c.Type == batchv1.JobFailed {
					f.t.Logf("job %s failed: %s: %s", name, c.Reason, c.Message)
				}
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

func (f *fixture) jobPod(job string) *corev1.Pod {
	f.t.Helper()
	var pod *corev1.Pod
	f.waitFor("pod of job "+job, func(ctx context.Context) (bool, error) {
		pods, err := f.client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: localcluster.JobPodLabel + "=" + job})
		if err != nil || len(pods.Items) == 0 {
			return false, err
		}
		pod = &pods.Items[0]
		return true, nil
	})
	return pod
}

// result decodes the termination message of a finished pod.
func (f *fixture) result(pod *corev1.Pod) (jobargs.Result, *corev1.ContainerStateTerminated) {
	f.t.Helper()
	if len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].State.Terminated == nil {
		f.t.Fatalf("pod %s: no terminated container: %+v", pod.Name, pod.Status.ContainerStatuses)
	}
	term := pod.Status.ContainerStatuses[0].State.Terminated
	res, err := jobargs.DecodeResult([]byte(term.Message))
	if err != nil {
		f.t.Fatalf("pod %s: termination message %q: %v", pod.Name, term.Message, err)
	}
	return res, term
}

func (f *fixture) waitFor(what string, cond wait.ConditionWithContextFunc) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), 45*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, cond); err != nil {
		f.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (e *env) testBackup(t *testing.T) {
	f := e.newFixture(t)
	backupDir := f.pvc("backup-1")
	f.createJob(jobSpec{name: "backup-1", backupClaim: "backup-1", args: jobargs.Args{
		Op: jobargs.OpBackup, NodeRoot: jobargs.NodeRootMountPath, BackupPath: jobargs.BackupMountPath,
	}})
	if got := f.waitJob("backup-1"); got != batchv1.JobComplete {
		t.Fatalf("job ended %s, want Complete", got)
	}
	pod := f.jobPod("backup-1")
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	res, term := f.result(pod)
	if term.ExitCode != 0 || term.Reason != "Completed" {
		t.Errorf("terminated: exit %d reason %q", term.ExitCode, term.Reason)
	}
	if res.Op != jobargs.OpBackup || res.Error != "" || res.Files != 5 || !strings.HasPrefix(res.Checksum, "sha256:") {
		t.Errorf("result %+v, want a backup of 5 files with a checksum", res)
	}
	for rel, content := range nodeFiles {
		got, err := os.ReadFile(filepath.Join(backupDir, rel))
		inState := strings.HasPrefix(rel, "chain_data/") || strings.HasPrefix(rel, "data/")
		switch {
		case inState && (err != nil || string(got) != content):
			t.Errorf("backup %s = %q, %v; want %q", rel, got, err, content)
		case !inState && err == nil:
			t.Errorf("backup holds %s, which is not chain state", rel)
		}
	}
	if _, err := os.Stat(filepath.Join(backupDir, datamove.ManifestFile)); err != nil {
		t.Errorf("no manifest in the backup: %v", err)
	}
	run, ok := e.runner.PodRun(f.ns, pod.Name)
	if !ok || !run.Started || !run.Finished || run.ExitCode != 0 || run.Killed {
		t.Errorf("runner's record %+v", run)
	}
}

func (e *env) testFallback(t *testing.T) {
	f := e.newFixture(t)
	f.createJob(jobSpec{name: "fallback-1", args: jobargs.Args{
		Op: jobargs.OpFallback, NodeRoot: jobargs.NodeRootMountPath, BlockHeight: 100,
		ConfigPath: jobargs.ConfigMountPath + "/" + jobargs.ConfigFileName, DeleteConsensusData: true,
	}})
	if got := f.waitJob("fallback-1"); got != batchv1.JobComplete {
		t.Fatalf("job ended %s, want Complete", got)
	}
	res, _ := f.result(f.jobPod("fallback-1"))
	if res.CloudOpGeneration != jobargs.CloudOpCurrent || res.BlockHeight != 100 {
		t.Errorf("result %+v, want the current cloud-op at height 100", res)
	}
	if got, err := os.ReadFile(filepath.Join(f.nodeRoot, "chain_data", jobrunner.FallbackMarker)); err != nil || string(got) != "100\n" {
		t.Errorf("fallback marker %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(f.nodeRoot, "raft-data-dir")); !os.IsNotExist(err) {
		t.Errorf("raft-data-dir after --clean: %v", err)
	}
	want := []string{"rollback", "100", "-n", jobargs.NodeRootMountPath, "-c", "/cita/config/config.toml", "--clean"}
	if !slices.ContainsFunc(e.cloudOpCalls(t), func(c jobrunner.CloudOpCall) bool { return slices.Equal(c.Args, want) }) {
		t.Errorf("no cloud-op call %q", want)
	}
}

func (e *env) cloudOpCalls(t *testing.T) []jobrunner.CloudOpCall {
	calls, err := e.runner.CloudOpCalls()
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

func (e *env) testFallbackFails(t *testing.T) {
	f := e.newFixture(t)
	f.createJob(jobSpec{name: "fallback-fails", args: jobargs.Args{
		Op: jobargs.OpFallback, NodeRoot: jobargs.NodeRootMountPath, BlockHeight: jobrunner.FailHeight,
		ConfigPath: jobargs.ConfigMountPath + "/" + jobargs.ConfigFileName,
	}})
	if got := f.waitJob("fallback-fails"); got != batchv1.JobFailed {
		t.Fatalf("job ended %s, want Failed", got)
	}
	pod := f.jobPod("fallback-fails")
	if pod.Status.Phase != corev1.PodFailed {
		t.Errorf("pod phase %s, want Failed", pod.Status.Phase)
	}
	res, term := f.result(pod)
	if term.ExitCode != 1 || term.Reason != "Error" {
		t.Errorf("terminated: exit %d reason %q, want 1 Error", term.ExitCode, term.Reason)
	}
	if !strings.Contains(res.Error, jobrunner.FailReason) {
		t.Errorf("result error %q does not carry cloud-op's reason %q", res.Error, jobrunner.FailReason)
	}
	// The checkpoint put the node's data back.
	for rel, content := range nodeFiles {
		if got, err := os.ReadFile(filepath.Join(f.nodeRoot, rel)); err != nil || string(got) != content {
			t.Errorf("after a failed fallback %s = %q, %v; want %q", rel, got, err, content)
		}
	}
}

func (e *env) testUnpullable(t *testing.T) {
	f := e.newFixture(t)
	f.createJob(jobSpec{name: "unpullable", image: "registry.local/unpullable:1", args: jobargs.Args{
		Op: jobargs.OpChown, NodeRoot: jobargs.NodeRootMountPath, UID: 1000, GID: 1000,
	}})
	var pod *corev1.Pod
	f.waitFor("ImagePullBackOff", func(ctx context.Context) (bool, error) {
		pod = f.jobPod("unpullable")
		cs := pod.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "ImagePullBackOff", nil
	})
	if pod.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s, want Pending", pod.Status.Phase)
	}
	if run, _ := e.runner.PodRun(f.ns, pod.Name); run.Started {
		t.Errorf("the unpullable container was run: %+v", run)
	}
	// Deleting the Job deletes its pod, which the runner finishes and removes.
	if err := f.client.BatchV1().Jobs(f.ns).Delete(t.Context(), "unpullable", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	f.waitPodGone(pod.Name)
}

func (f *fixture) waitPodGone(name string) {
	f.t.Helper()
	f.waitFor("pod "+name+" gone", func(ctx context.Context) (bool, error) {
		_, err := f.client.CoreV1().Pods(f.ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// waitRunning waits until the pod's container runs and cloud-op was called at
// height h, and returns the process id.
func (f *fixture) waitRunning(pod string, h int64) int {
	f.t.Helper()
	var pid int
	f.waitFor("pod "+pod+" running cloud-op", func(ctx context.Context) (bool, error) {
		p, err := f.client.CoreV1().Pods(f.ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning {
			return false, err
		}
		run, _ := f.runner.PodRun(f.ns, pod)
		pid = run.PID
		return slices.ContainsFunc(f.cloudOpCalls(f.t), func(c jobrunner.CloudOpCall) bool {
			return len(c.Args) > 1 && c.Args[1] == strconv.FormatInt(h, 10)
		}), nil
	})
	return pid
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || !errors.Is(err, syscall.ESRCH)
}

func (e *env) testDeletedPod(t *testing.T) {
	f := e.newFixture(t)
	f.createJob(jobSpec{name: "slow", args: jobargs.Args{
		Op: jobargs.OpFallback, NodeRoot: jobargs.NodeRootMountPath, BlockHeight: jobrunner.SlowHeight,
		ConfigPath: jobargs.ConfigMountPath + "/" + jobargs.ConfigFileName,
	}})
	pod := f.jobPod("slow")
	pid := f.waitRunning(pod.Name, jobrunner.SlowHeight)
	if err := f.client.CoreV1().Pods(f.ns).Delete(t.Context(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitPodGone(pod.Name)
	if alive(pid) {
		t.Errorf("process %d still alive after its pod was deleted", pid)
	}
	run, _ := e.runner.PodRun(f.ns, pod.Name)
	// SIGTERM: cita-node-job stops cloud-op, puts the data back, exits 1.
	if !run.Killed || !run.Finished || run.ExitCode != 1 || !strings.Contains(run.Message, "put back") {
		t.Errorf("runner's record %+v, want killed, exit 1, data put back", run)
	}
	if got := f.waitJob("slow"); got != batchv1.JobFailed {
		t.Errorf("job ended %s, want Failed", got)
	}
	for rel, content := range nodeFiles {
		if got, err := os.ReadFile(filepath.Join(f.nodeRoot, rel)); err != nil || string(got) != content {
			t.Errorf("after a killed fallback %s = %q, %v; want %q", rel, got, err, content)
		}
	}
}

func (e *env) testDeadline(t *testing.T) {
	f := e.newFixture(t)
	f.createJob(jobSpec{name: "hang", deadline: 3, args: jobargs.Args{
		Op: jobargs.OpFallback, NodeRoot: jobargs.NodeRootMountPath, BlockHeight: jobrunner.HangHeight,
		ConfigPath: jobargs.ConfigMountPath + "/" + jobargs.ConfigFileName,
	}})
	pod := f.jobPod("hang")
	pid := f.waitRunning(pod.Name, jobrunner.HangHeight)
	if got := f.waitJob("hang"); got != batchv1.JobFailed {
		t.Errorf("job ended %s, want Failed", got)
	}
	f.waitPodGone(pod.Name)
	if alive(pid) {
		t.Errorf("process %d still alive after the deadline", pid)
	}
	// cloud-op ignores SIGTERM: the runner's SIGKILL ends the group.
	if run, _ := e.runner.PodRun(f.ns, pod.Name); !run.Killed || run.ExitCode != 137 {
		t.Errorf("runner's record %+v, want killed with 137", run)
	}
}

func (e *env) testLegacySnapshot(t *testing.T) {
	if err := e.runner.SetCloudOp(jobargs.CloudOpLegacy); err != nil {
		t.Fatal(err)
	}
	defer e.runner.SetCloudOp(jobargs.CloudOpCurrent)
	f := e.newFixture(t)
	snapDir := f.pvc("snap-1")
	f.createJob(jobSpec{name: "snapshot-1", backupClaim: "snap-1", args: jobargs.Args{
		Op: jobargs.OpSnapshot, NodeRoot: jobargs.NodeRootMountPath, BackupPath: jobargs.BackupMountPath, BlockHeight: 42,
		ConfigPath: jobargs.ConfigMountPath + "/" + jobargs.ConfigFileName, Crypto: "sm", Consensus: "raft",
	}})
	if got := f.waitJob("snapshot-1"); got != batchv1.JobComplete {
		t.Fatalf("job ended %s, want Complete", got)
	}
	res, _ := f.result(f.jobPod("snapshot-1"))
	// The fake state-backup writes one RocksDB of 4 files (CURRENT, MANIFEST-000001,
	// 000003.sst, LOCK) as P/<h>; the manifest goes beside it.
	if res.CloudOpGeneration != jobargs.CloudOpLegacy || res.Files != 4 || res.Checksum == "" {
		t.Errorf("result %+v, want a legacy snapshot of 4 files with a checksum", res)
	}
	if got, err := os.ReadFile(filepath.Join(snapDir, "42", "000003.sst")); err != nil || string(got) != "state of height 42\n" {
		t.Errorf("snapshot content %q, %v", got, err)
	}
	if _, err := os.Lstat(filepath.Join(snapDir, "42", datamove.ManifestFile)); !os.IsNotExist(err) {
		t.Errorf("a manifest inside the legacy snapshot, which state-recover copies into the node's statedb: %v", err)
	}
	if _, err := os.Stat(filepath.Join(snapDir, "42."+datamove.ManifestFile)); err != nil {
		t.Errorf("no manifest beside the legacy snapshot: %v", err)
	}
	want := []string{"state-backup", "42", "--node-root", "/cita/node", "--config-path", "/cita/config/config.toml",
		"--backup-path", "/cita/backup", "--crypto", "sm", "--consensus", "raft"}
	if !slices.ContainsFunc(e.cloudOpCalls(t), func(c jobrunner.CloudOpCall) bool {
		return c.Generation == jobargs.CloudOpLegacy && slices.Equal(c.Args, want)
	}) {
		t.Errorf("no legacy cloud-op call %q in %v", want, e.cloudOpCalls(t))
	}

	// Restoring it: verified against that manifest, then state-recover puts it in the
	// node's data/statedb.
	f.createJob(jobSpec{name: "snapshot-restore-1", backupClaim: "snap-1", backupReadOnly: true, args: jobargs.Args{
		Op: jobargs.OpSnapshotRestore, NodeRoot: jobargs.NodeRootMountPath, SourcePath: jobargs.BackupMountPath, BlockHeight: 42,
		ConfigPath: jobargs.ConfigMountPath + "/" + jobargs.ConfigFileName, Crypto: "sm", Consensus: "raft",
	}})
	if got := f.waitJob("snapshot-restore-1"); got != batchv1.JobComplete {
		t.Fatalf("snapshot-restore job ended %s, want Complete", got)
	}
	res, _ = f.result(f.jobPod("snapshot-restore-1"))
	if res.Verified == nil || !*res.Verified || res.Files != 4 || res.Warning != "" {
		t.Errorf("snapshot-restore result %+v, want 4 files verified, no warning", res)
	}
	if got, err := os.ReadFile(filepath.Join(f.nodeRoot, "data", "statedb", "000003.sst")); err != nil || string(got) != "state of height 42\n" {
		t.Errorf("node's statedb after state-recover %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(f.nodeRoot, "chain_data", "000001.sst")); err != nil || string(got) != "blocks" {
		t.Errorf("node's chain_data after state-recover %q, %v", got, err)
	}
}

// containerViewScript reports, in the termination log, what the container
// sees.
const containerViewScript = `exec > /dev/termination-log 2>&1
echo "cwd=$(pwd)"
echo "pod=$POD_NAME"
echo "uid=$(id -u)"
echo "config=$(head -n 1 /cita/config/config.toml)"
echo "cita=$(ls /cita | tr '\n' ' ')"
if touch /cita/backup/probe 2>/dev/null; then echo backup=writable; else echo backup=read-only; fi
if touch /cita/node/probe; then echo node=writable; fi
echo "dev=$(ls /dev | tr '\n' ' ')"
if echo x > /dev/null && head -c 4 /dev/urandom | wc -c | grep -q 4; then echo devices=ok; fi
if test -s /var/run/secrets/kubernetes.io/serviceaccount/token; then echo token=ok; fi
echo "sa-namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
echo "pid1=$(cat /proc/1/comm)"
echo "job=$(command -v cita-node-job)"
echo "cloud-op=$(command -v cloud-op)"
`

// testContainerView runs a hand-made Job (sh, not cita-node-job) that reports
// what its container sees: the mounts (subPath, read-only, ConfigMap), a
// private /dev, env, working directory and PATH.
func (e *env) testContainerView(t *testing.T) {
	f := e.newFixture(t)
	backupDir := f.pvc("view-backup")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "view"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Volumes: []corev1.Volume{
					{Name: "node", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: f.node.DataClaim}}},
					{Name: "backup", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "view-backup", ReadOnly: true}}},
					{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: f.node.ConfigMap}}}},
				},
				Containers: []corev1.Container{{
					Name: "view", Image: "busybox", Command: []string{"sh", "-c", containerViewScript},
					WorkingDir: jobargs.NodeRootMountPath,
					Env:        []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "node", MountPath: jobargs.NodeRootMountPath, SubPath: f.node.DataSubPath},
						{Name: "backup", MountPath: jobargs.BackupMountPath},
						{Name: "config", MountPath: jobargs.ConfigMountPath, ReadOnly: true},
					},
				}},
			}},
		},
	}
	if _, err := f.client.BatchV1().Jobs(f.ns).Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.waitJob("view"); got != batchv1.JobComplete {
		t.Fatalf("job ended %s, want Complete", got)
	}
	pod := f.jobPod("view")
	msg := pod.Status.ContainerStatuses[0].State.Terminated.Message
	t.Logf("container view:\n%s", msg)
	run, ok := e.runner.PodRun(f.ns, pod.Name)
	if !ok || run.CloudOp == "" {
		t.Fatalf("no run of %s", pod.Name)
	}
	for _, want := range []string{
		"cwd=/cita/node\n", "pod=" + pod.Name + "\n", "uid=0\n", "config=[network_zenoh]\n",
		"cita=backup config node \n", "backup=read-only\n", "node=writable\n", "devices=ok\n",
		"token=ok\n", "sa-namespace=" + f.ns + "\n", "pid1=sh\n",
		"job=" + filepath.Join(e.runner.WorkDir(), "bin", run.CloudOp, "cita-node-job") + "\n",
		"cloud-op=" + filepath.Join(e.runner.WorkDir(), "bin", run.CloudOp, "cloud-op") + "\n",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("container view lacks %q", want)
		}
	}
	devLine := ""
	for _, l := range strings.Split(msg, "\n") {
		if d, ok := strings.CutPrefix(l, "dev="); ok {
			devLine = d
		}
	}
	for _, d := range []string{"null", "zero", "urandom", "random", "full", "termination-log", "fd", "shm"} {
		if !slices.Contains(strings.Fields(devLine), d) {
			t.Errorf("private /dev lacks %s: %q", d, devLine)
		}
	}
	for _, d := range strings.Fields(devLine) {
		if strings.HasPrefix(d, "loop") || d == "kmsg" || d == "mem" || strings.HasPrefix(d, "sd") || strings.HasPrefix(d, "vd") {
			t.Errorf("host device %s visible in the container", d)
		}
	}
	// On the host: the probe landed in the node root (the subPath), not in
	// the read-only backup; nothing was made in the host's /dev or /cita.
	if _, err := os.Stat(filepath.Join(f.nodeRoot, "probe")); err != nil {
		t.Errorf("probe not in the node root on the host: %v", err)
	}
	if _, err := os.Stat(filepath.Join(backupDir, "probe")); !os.IsNotExist(err) {
		t.Errorf("probe written through the read-only mount: %v", err)
	}
	if _, err := os.Stat(jobargs.DefaultTerminationLog); !os.IsNotExist(err) {
		t.Errorf("%s exists on the host: %v", jobargs.DefaultTerminationLog, err)
	}
	if names, _ := os.ReadDir("/cita"); len(names) > 0 {
		t.Errorf("the host's /cita is not empty: %v", names)
	}
}

// testForceDeleted: a pod deleted with a grace period of 0 gets SIGKILL at
// once, although its cloud-op ignores SIGTERM and the runner's KillGrace is 2s.
func (e *env) testForceDeleted(t *testing.T) {
	f := e.newFixture(t)
	f.createJob(jobSpec{name: "forced", args: jobargs.Args{
		Op: jobargs.OpFallback, NodeRoot: jobargs.NodeRootMountPath, BlockHeight: jobrunner.HangHeight,
		ConfigPath: jobargs.ConfigMountPath + "/" + jobargs.ConfigFileName,
	}})
	pod := f.jobPod("forced")
	pid := f.waitRunning(pod.Name, jobrunner.HangHeight)
	deleted := time.Now()
	if err := f.client.CoreV1().Pods(f.ns).Delete(t.Context(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	f.waitPodGone(pod.Name)
	if alive(pid) {
		t.Errorf("process %d still alive after its pod was force-deleted", pid)
	}
	run, _ := e.runner.PodRun(f.ns, pod.Name)
	if !run.Killed || run.ExitCode != 137 {
		t.Errorf("runner's record %+v, want killed with 137", run)
	}
	if d := run.FinishedAt.Sub(deleted); d > 1500*time.Millisecond {
		t.Errorf("killed %s after the forced deletion, want at once", d)
	}
}
