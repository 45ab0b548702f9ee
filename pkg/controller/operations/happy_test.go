package operations

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

// deployment of one node for each deploy method, named so that the
// operation's CR can point at it.
type deployed struct {
	method    citav1.DeployMethod
	chain     string
	node      string
	objects   []runtime.Object
	workload  string // resource/name of what stop and start scale
	replicas  int32
	pod       string // the node's pod
	claim     string // its data PVC
	subPath   string
	configMap string
}

func deployments() []deployed {
	return []deployed{
		{
			method: citav1.DeployMethodCloudConfig, chain: "test-chain", node: "test-chain-node0",
			objects:  nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster),
			workload: "statefulsets test-chain-node0", replicas: 1, pod: "test-chain-node0-0",
			claim: "datadir-test-chain-node0-0", configMap: "test-chain-node0-config",
		},
		{
			method: citav1.DeployMethodHelm, chain: "helm-chain", node: "helm-chain-1",
			objects:  nodetest.HelmChain("helm-chain", 3, inCluster),
			workload: "statefulsets helm-chain", replicas: 3, pod: "helm-chain-1",
			claim: "helm-chain-data", subPath: "helm-chain-1",
		},
		{
			method: citav1.DeployMethodPython, chain: "py-chain", node: "py-node0",
			objects:  nodetest.PythonNode("py-chain", "py-node0", inCluster),
			workload: "deployments py-node0", replicas: 1, pod: "py-node0-5d8f7c-abcde",
			claim: "py-chain-pvc", subPath: "py-node0",
		},
	}
}

func meta0(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name), ResourceVersion: "1", Generation: 1, CreationTimestamp: metav1.NewTime(t0)}
}

func nodeTarget(d deployed) citav1.NodeTarget {
	return citav1.NodeTarget{Chain: d.chain, Node: d.node, DeployMethod: d.method}
}

func jobDefaults() citav1.JobOptions {
	return citav1.JobOptions{PullPolicy: corev1.PullIfNotPresent, TTLSecondsAfterFinished: ptr.To[int32](30)}
}

func stopAndStart() citav1.NodeJobOptions {
	return citav1.NodeJobOptions{Action: citav1.ActionStopAndStart, PodAffinityFlag: ptr.To(false)}
}

// jobKinds are the kinds that run a Job on one node, with the CR for a node
// and what else the cluster must hold for them.
type jobKind struct {
	kind    string
	suffix  string
	op      jobargs.Op
	newCR   func(d deployed) object
	extra   func(d deployed) []runtime.Object
	result  jobargs.Result
	creates []string // objects the kind creates besides its Job
	claim   string   // the backup claim the Job mounts
}

func jobKinds() []jobKind {
	return []jobKind{
		{
			kind: "BlockHeightFallback", suffix: "fallback", op: jobargs.OpFallback,
			newCR: func(d deployed) object {
				return &citav1.BlockHeightFallback{ObjectMeta: meta0("fb"), Spec: citav1.BlockHeightFallbackSpec{
					NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults(), BlockHeight: 2000000, DeleteConsensusData: ptr.To(true)}}
			},
			result: jobargs.Result{Op: jobargs.OpFallback, BlockHeight: 2000000, CloudOpGeneration: jobargs.CloudOpCurrent, Seconds: 1.5},
		},
		{
			kind: "Backup", suffix: "backup", op: jobargs.OpBackup,
			newCR: func(d deployed) object {
				return &citav1.Backup{ObjectMeta: meta0("bk"), Spec: citav1.BackupSpec{
					NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults()}}
			},
			result:  jobargs.Result{Op: jobargs.OpBackup, Bytes: 3 << 20, Files: 42, Checksum: "sha256:abc", Seconds: 2},
			creates: []string{"create persistentvolumeclaims bk"},
			claim:   "bk",
		},
		{
			kind: "Snapshot", suffix: "snapshot", op: jobargs.OpSnapshot,
			newCR: func(d deployed) object {
				return &citav1.Snapshot{ObjectMeta: meta0("sn"), Spec: citav1.SnapshotSpec{
					NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults(), BlockHeight: 30, PVCSize: "2Gi"}}
			},
			result:  jobargs.Result{Op: jobargs.OpSnapshot, Bytes: 1 << 20, Files: 7, Checksum: "sha256:def", BlockHeight: 30, HeightBefore: ptr.To[int64](31)},
			creates: []string{"create persistentvolumeclaims sn"},
			claim:   "sn",
		},
		{
			kind: "Restore", suffix: "restore", op: jobargs.OpRestore,
			newCR: func(d deployed) object {
				return &citav1.Restore{ObjectMeta: meta0("rs"), Spec: citav1.RestoreSpec{
					NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults(), Backup: "old-backup"}}
			},
			extra: func(d deployed) []runtime.Object {
				b := &citav1.Backup{ObjectMeta: meta0("old-backup"), Spec: citav1.BackupSpec{NodeTarget: nodeTarget(d)}}
				b.Status.Status = citav1.PhaseComplete
				b.Status.PVC = "old-backup"
				return []runtime.Object{b, nodetest.PVC("old-backup", inCluster)}
			},
			result: jobargs.Result{Op: jobargs.OpRestore, Bytes: 3 << 20, Files: 42, Verified: ptr.To(true)},
			claim:  "old-backup",
		},
		{
			kind: "ChangeOwner", suffix: "chown", op: jobargs.OpChown,
			newCR: func(d deployed) object {
				return &citav1.ChangeOwner{ObjectMeta: meta0("co"), Spec: citav1.ChangeOwnerSpec{
					NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults(), UID: ptr.To[int64](1000), GID: ptr.To[int64](1000)}}
			},
			result: jobargs.Result{Op: jobargs.OpChown, Changed: 120},
		},
	}
}

// TestHappyPath: every Job kind on every deploy method, step by step, with
// the exact writes of each step.
func TestHappyPath(t *testing.T) {
	for _, jk := range jobKinds() {
		for _, d := range deployments() {
			t.Run(jk.kind+"/"+string(d.method), func(t *testing.T) {
				cr := jk.newCR(d)
				objs := append([]runtime.Object{cr}, d.objects...)
				if jk.extra != nil {
					objs = append(objs, jk.extra(d)...)
				}
				f := newFixture(t, objs...)
				plural := strings.ToLower(jk.kind) + "s"
				name := cr.GetName()
				jobName := name + "-" + jk.suffix
				step := func(want ...string) {
					t.Helper()
					f.clearWrites()
					f.mustSync(jk.kind, name)
					if diff := cmp.Diff(want, f.writes()); diff != "" {
						t.Fatalf("writes (-want +got):\n%s", diff)
					}
				}

				step("patch " + plural + " " + name) // finalizer
				if fins := f.cr(cr).GetFinalizers(); len(fins) != 1 || fins[0] != Finalizer {
					t.Fatalf("finalizers %v", fins)
				}

				step("patch "+d.workload, "update "+plural+"/status "+name) // lock + stop
				st := f.status(cr)
				if st.Status != citav1.PhaseActive || st.Step != citav1.StepStopping {
					t.Fatalf("after stop: %s/%s", st.Status, st.Step)
				}
				if got := workloadReplicas(f, d); got != 0 {
					t.Fatalf("workload at %d replicas after the stop", got)
				}
				if len(st.Nodes) != 1 || *st.Nodes[0].Replicas != d.replicas || st.Nodes[0].Machine == "" {
					t.Fatalf("node record %+v", st.Nodes)
				}

				step() // the node's pod is still there: wait
				f.deletePod(d.pod)
				if d.method == citav1.DeployMethodHelm {
					// The chain's other pods go too; only the node's matters.
					f.deletePod("helm-chain-0")
				}
				step(append(append([]string{}, jk.creates...), "create jobs "+jobName, "update "+plural+"/status "+name)...)
				job := f.job(jobName)
				assertJob(t, job, d, jk)
				if st := f.status(cr); st.Step != citav1.StepRunning || st.Job == nil || st.Job.Name != jobName {
					t.Fatalf("after job creation: step %s job %+v", st.Step, st.Job)
				}

				step() // running
				f.finishJob(jobName, true, &jk.result)
				// The finished Job records the outcome until its TTL is set, so
				// the node is started and the outcome written in one sync.
				step("patch "+d.workload, "update "+plural+"/status "+name)
				st = f.status(cr)
				if !meta.IsStatusConditionTrue(st.Conditions, citav1.ConditionSucceeded) {
					t.Fatalf("after the Job: conditions %+v", st.Conditions)
				}
				if st.Job.Result != string(jk.result.Encode()) {
					t.Fatalf("result %q", st.Job.Result)
				}
				if f.job(jobName).Spec.TTLSecondsAfterFinished != nil {
					t.Fatal("TTL set before the result was recorded")
				}
				if got := workloadReplicas(f, d); got != d.replicas {
					t.Fatalf("workload back at %d replicas, want %d", got, d.replicas)
				}
				// Started, not yet seen Ready: still Active, the lock released.
				if st.Status != citav1.PhaseActive || st.Step != citav1.StepStarting || !meta.IsStatusConditionPresentAndEqual(st.Conditions, citav1.ConditionNodeReady, metav1.ConditionUnknown) {
					t.Fatalf("after the start: %s/%s conditions %+v", st.Status, st.Step, st.Conditions)
				}
				if a := workloadAnnotations(f, d); len(a) != 0 {
					t.Fatalf("annotations left on the workload at the start: %v", a)
				}

				step("update " + plural + "/status " + name) // its pods are Ready (the fixture plays the kubelet)
				st = f.status(cr)
				if !meta.IsStatusConditionTrue(st.Conditions, citav1.ConditionNodeReady) {
					t.Fatalf("NodeReady after the pods are Ready: %+v", meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady))
				}
				if st.Status != citav1.PhaseComplete || st.Step != citav1.StepDone || st.EndTime == nil {
					t.Fatalf("final status %s/%s end %v", st.Status, st.Step, st.EndTime)
				}
				if !strings.Contains(st.Message, fmt.Sprintf("back to %d replicas", d.replicas)) {
					t.Fatalf("final message %q does not say the node was started", st.Message)
				}
				if a := workloadAnnotations(f, d); len(a) != 0 {
					t.Fatalf("annotations left on the workload: %v", a)
				}

				step("patch jobs "+jobName, "patch "+plural+" "+name) // TTL, finalizer
				if ttl := f.job(jobName).Spec.TTLSecondsAfterFinished; ttl == nil || *ttl != 30 {
					t.Fatalf("job TTL %v", ttl)
				}
				if fins := f.cr(cr).GetFinalizers(); len(fins) != 0 {
					t.Fatalf("finalizers left: %v", fins)
				}
				step() // nothing more to do

				assertKindStatus(t, f, cr, jk)
				events := strings.Join(f.events(), "\n")
				for _, want := range []string{"Normal Stopping", "Normal Running", "Normal NodeReady", "Normal Done"} {
					if !strings.Contains(events, want) {
						t.Errorf("no %s event in:\n%s", want, events)
					}
				}
			})
		}
	}
}

func workloadKey(d deployed) string {
	kind, name, _ := strings.Cut(d.workload, " ")
	if kind == "deployments" {
		return "Deployment/" + name
	}
	return "StatefulSet/" + name
}

func workloadReplicas(f *fixture, d deployed) int32 {
	kind, name, _ := strings.Cut(d.workload, " ")
	if kind == "deployments" {
		return *f.deployment(name).Spec.Replicas
	}
	return *f.statefulSet(name).Spec.Replicas
}

func workloadAnnotations(f *fixture, d deployed) map[string]string {
	kind, name, _ := strings.Cut(d.workload, " ")
	var a map[string]string
	if kind == "deployments" {
		a = f.deployment(name).Annotations
	} else {
		a = f.statefulSet(name).Annotations
	}
	out := map[string]string{}
	for k, v := range a {
		if strings.HasPrefix(k, "citacloud.rivtower.com/") {
			out[k] = v
		}
	}
	return out
}

func assertJob(t *testing.T, j *batchv1.Job, d deployed, jk jobKind) {
	t.Helper()
	pod := j.Spec.Template.Spec
	if *j.Spec.BackoffLimit != 0 || j.Spec.TTLSecondsAfterFinished != nil || j.Spec.ActiveDeadlineSeconds == nil {
		t.Errorf("job backoff %v ttl %v deadline %v", *j.Spec.BackoffLimit, j.Spec.TTLSecondsAfterFinished, j.Spec.ActiveDeadlineSeconds)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken || pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod token %v restart %s", pod.AutomountServiceAccountToken, pod.RestartPolicy)
	}
	c := pod.Containers[0]
	if c.Image != "example.com/cita-node-operator-job:test" {
		t.Errorf("image %s", c.Image)
	}
	args, err := jobargs.Parse(c.Command)
	if err != nil {
		t.Fatalf("the Job's command does not parse with the job binary's parser: %v", err)
	}
	if args.Op != jk.op || args.NodeRoot != jobargs.NodeRootMountPath {
		t.Errorf("args %+v", args)
	}
	if args.Op.UsesCloudOp() {
		if args.Crypto != "sm" || args.Consensus != "raft" {
			t.Errorf("crypto/consensus %q/%q, want sm/raft from the images", args.Crypto, args.Consensus)
		}
		wantConfig := jobargs.NodeRootMountPath + "/config.toml"
		if d.configMap != "" {
			wantConfig = jobargs.ConfigMountPath + "/config.toml"
		}
		if args.ConfigPath != wantConfig {
			t.Errorf("config path %s, want %s", args.ConfigPath, wantConfig)
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	claims := map[string]string{}
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim != nil {
			claims[v.Name] = v.PersistentVolumeClaim.ClaimName
		}
	}
	nodeMount := mounts[jobargs.NodeRootMountPath]
	if claims[nodeMount.Name] != d.claim || nodeMount.SubPath != d.subPath {
		t.Errorf("node root mount %+v of claim %q, want claim %q subPath %q", nodeMount, claims[nodeMount.Name], d.claim, d.subPath)
	}
	if jk.claim != "" {
		m := mounts[jobargs.BackupMountPath]
		if claims[m.Name] != jk.claim {
			t.Errorf("backup mount of claim %q, want %q", claims[m.Name], jk.claim)
		}
	}
	if j.Labels[nodeops.LabelOperationUID] == "" || j.Spec.Template.Labels[nodeops.LabelOperationUID] == "" {
		t.Error("job or pod without the operation label")
	}
}

func assertKindStatus(t *testing.T, f *fixture, cr object, jk jobKind) {
	t.Helper()
	switch got := f.cr(cr).(type) {
	case *citav1.Backup:
		want := citav1.VolumeStatus{PVC: "bk", StorageClass: "local-path", Allocate: got.Status.Allocate, Actual: 3 << 20, Size: "3.0MiB", Files: 42, Checksum: "sha256:abc"}
		if diff := cmp.Diff(want, got.Status.VolumeStatus); diff != "" || got.Status.Allocate <= 0 {
			t.Errorf("backup volume status (-want +got):\n%s", diff)
		}
		if got.Status.Live {
			t.Error("a StopAndStart backup says it was live")
		}
	case *citav1.Snapshot:
		if got.Status.BlockHeight != 30 || got.Status.Allocate != 2<<30 || got.Status.Checksum != "sha256:def" {
			t.Errorf("snapshot status %+v", got.Status)
		}
		if got.Status.HeightBefore == nil || *got.Status.HeightBefore != 31 {
			t.Errorf("snapshot heightBefore %v, want 31 (the job's result)", got.Status.HeightBefore)
		}
	case *citav1.Restore:
		if got.Status.Verified == nil || !*got.Status.Verified {
			t.Errorf("restore verified %v", got.Status.Verified)
		}
	}
}
