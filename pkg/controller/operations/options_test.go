package operations

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

// TestDirectBackupCopiesTheLiveNode: Direct takes the lock but neither
// stops nor starts the node, and the Backup says it was taken live.
func TestDirectBackupCopiesTheLiveNode(t *testing.T) {
	d := deployments()[0]
	cr := backupNamed("bk", d, t0)
	cr.Spec.Action = citav1.ActionDirect
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	f.mustSync("Backup", "bk")
	f.clearWrites()
	f.mustSync("Backup", "bk") // lock only
	if got := f.workloadWrites(); len(got) != 1 {
		t.Fatalf("writes %v", got)
	}
	if workloadReplicas(f, d) != 1 {
		t.Fatal("Direct stopped the node")
	}
	f.mustSync("Backup", "bk") // Job, without waiting for the pod to go
	if !f.jobExists("bk-backup") {
		t.Fatal("no Job")
	}
	f.finishJob("bk-backup", true, &jobargs.Result{Op: jobargs.OpBackup, Bytes: 10})
	for range 4 {
		f.mustSync("Backup", "bk")
	}
	got := f.cr(cr).(*citav1.Backup)
	if got.Status.Status != citav1.PhaseComplete || !got.Status.Live {
		t.Fatalf("status %s live %v", got.Status.Status, got.Status.Live)
	}
	assertStartedWith(t, f, d, 1)
	if n := stopPatches(f); n != 0 {
		t.Fatalf("%d scale-downs for a Direct backup", n)
	}
}

// TestDirectRestoreOnAStoppedNode runs without scaling anything.
func TestDirectRestoreOnAStoppedNode(t *testing.T) {
	d := deployments()[0]
	d.objects = nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster, nodetest.Stopped())
	cr := restoreFrom(d, "b", "")
	cr.Spec.Action = citav1.ActionDirect
	f := newFixture(t, append(append([]runtime.Object{cr}, d.objects...), completeBackup("b", "test-chain", citav1.PhaseComplete)...)...)
	for range 3 {
		f.mustSync("Restore", "rs")
	}
	if !f.jobExists("rs-restore") {
		t.Fatalf("no Job: %s", f.status(cr).Message)
	}
	f.finishJob("rs-restore", true, &jobargs.Result{Op: jobargs.OpRestore, Verified: ptr.To(false), Warning: "backup b has no manifest: restored unverified"})
	for range 4 {
		f.mustSync("Restore", "rs")
	}
	st := f.cr(cr).(*citav1.Restore).Status
	if st.Status != citav1.PhaseComplete || st.Verified == nil || *st.Verified {
		t.Fatalf("status %s verified %v", st.Status, st.Verified)
	}
	if !strings.Contains(st.Message, "restored unverified") {
		t.Errorf("message %q does not say the restore was unverified", st.Message)
	}
	if ev := strings.Join(f.events(), "\n"); !strings.Contains(ev, "Warning JobWarning backup b has no manifest") {
		t.Errorf("no warning event: %s", ev)
	}
	if workloadReplicas(f, d) != 0 || stopPatches(f) != 0 {
		t.Fatal("Direct scaled the node")
	}
}

func TestRestoreFromSnapshot(t *testing.T) {
	d := deployments()[1]
	snap := &citav1.Snapshot{ObjectMeta: meta0("snap"), Spec: citav1.SnapshotSpec{NodeTarget: nodeTarget(d), BlockHeight: 30}}
	snap.Status.Status = citav1.PhaseComplete
	snap.Status.PVC = "snap"
	snap.Status.BlockHeight = 30
	cr := restoreFrom(d, "", "snap")
	cr.Spec.DeleteConsensusData = ptr.To(true)
	f := newFixture(t, append([]runtime.Object{cr, snap, nodetest.PVC("snap", inCluster, nodetest.Size("5Gi"))}, d.objects...)...)
	f.mustSync("Restore", "rs")
	f.mustSync("Restore", "rs")
	f.deletePod(d.pod)
	f.mustSync("Restore", "rs")
	job := f.job("rs-restore")
	args, err := jobargs.Parse(job.Spec.Template.Spec.Containers[0].Command)
	if err != nil {
		t.Fatal(err)
	}
	want := jobargs.Args{Op: jobargs.OpSnapshotRestore, NodeRoot: jobargs.NodeRootMountPath, ConfigPath: jobargs.NodeRootMountPath + "/config.toml",
		SourcePath: jobargs.BackupMountPath, BlockHeight: 30, Crypto: "sm", Consensus: "raft", DeleteConsensusData: true}
	if args != want {
		t.Fatalf("args\n got %+v\nwant %+v", args, want)
	}
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "snap" && !v.PersistentVolumeClaim.ReadOnly {
			t.Error("the snapshot is mounted writable")
		}
	}
}

// TestPodAffinityPinsTheJobToTheNodesMachine: the machine recorded at the
// stop is where the Job must run.
func TestPodAffinityPinsTheJobToTheNodesMachine(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	cr.Spec.PodAffinityFlag = ptr.To(true)
	machine := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "machine-a"}}
	f := newFixture(t, append([]runtime.Object{cr, machine}, d.objects...)...)
	runUntilJob(t, f, d)
	aff := f.job("fb-fallback").Spec.Template.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Fatal("no required node affinity")
	}
	req := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0]
	if req.Key != "metadata.name" || len(req.Values) != 1 || req.Values[0] != "machine-a" {
		t.Fatalf("affinity %+v", req)
	}
	if st := f.status(cr); st.Nodes[0].Machine != "machine-a" {
		t.Fatalf("machine not recorded in status: %+v", st.Nodes)
	}
}

// TestJobImage: the original project's job image is replaced (with a
// Warning), any other is used as given, none means the configured one.
func TestJobImage(t *testing.T) {
	cases := map[string]struct{ image, want, event string }{
		"original project's image": {"registry.devops.rivtower.com/cita-cloud/cita-node-job:v0.0.2", "example.com/cita-node-operator-job:test", "Warning JobImageReplaced"},
		"custom image":             {"registry.example/ops/my-job:v1", "registry.example/ops/my-job:v1", ""},
		"no image":                 {"", "example.com/cita-node-operator-job:test", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := deployments()[0]
			cr := fallbackOn(d)
			cr.Spec.Image = tc.image
			f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
			runUntilJob(t, f, d)
			if got := f.job("fb-fallback").Spec.Template.Spec.Containers[0].Image; got != tc.want {
				t.Fatalf("image %s, want %s", got, tc.want)
			}
			if st := f.status(cr); st.Job.Image != tc.want {
				t.Fatalf("status records image %s", st.Job.Image)
			}
			events := strings.Join(f.events(), "\n")
			if tc.event != "" && !strings.Contains(events, tc.event) {
				t.Errorf("no %s event in %s", tc.event, events)
			}
			if tc.event == "" && strings.Contains(events, "JobImageReplaced") {
				t.Errorf("image replaced: %s", events)
			}
		})
	}
}

// TestStatusWrittenOnlyWhenItChanges: syncs with nothing new write nothing.
func TestStatusWrittenOnlyWhenItChanges(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.mustSync("BlockHeightFallback", "fb")
	f.clearWrites()
	f.events()
	for range 5 {
		f.mustSync("BlockHeightFallback", "fb")
	}
	if w := f.writes(); len(w) != 0 {
		t.Fatalf("idle syncs wrote %v", w)
	}
	if ev := f.events(); len(ev) != 0 {
		t.Fatalf("idle syncs emitted %v", ev)
	}
}

// nodePod is the node's pod as the deployment holds it: Running and Ready.
func nodePod(t *testing.T, d deployed) *corev1.Pod {
	t.Helper()
	for _, o := range d.objects {
		if p, ok := o.(*corev1.Pod); ok && p.Name == d.pod {
			p = p.DeepCopy()
			p.ResourceVersion = ""
			return p
		}
	}
	t.Fatalf("no pod %s among the node's objects", d.pod)
	return nil
}

// TestRunWithInformers runs the controller as main does, informers watching
// the fakes, while the test plays the kubelet and the Job controller: the
// event handlers alone must carry an operation from creation to Complete.
func TestRunWithInformers(t *testing.T) {
	d := deployments()[2]
	f := newFixture(t, d.objects...)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	f.c.cfg.WaitRecheck = time.Hour // progress must come from events
	f.kubeInf.Start(ctx.Done())
	f.citaInf.Start(ctx.Done())
	done := make(chan error)
	go func() { done <- f.c.Run(ctx, 2) }()

	cr := fallbackOn(d)
	if _, err := f.cita.CitacloudV1().BlockHeightFallbacks(ns).Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got, err := f.cita.CitacloudV1().BlockHeightFallbacks(ns).Get(ctx, "fb", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Status == citav1.PhaseComplete && len(got.Finalizers) == 0 {
			break
		}
		if dep, _ := f.kube.AppsV1().Deployments(ns).Get(ctx, "py-node0", metav1.GetOptions{}); *dep.Spec.Replicas == 0 {
			_ = f.kube.CoreV1().Pods(ns).Delete(ctx, d.pod, metav1.DeleteOptions{})
		} else if f.jobExists("fb-fallback") {
			// Started again: the Deployment's pod comes back, Ready.
			_, _ = f.kube.CoreV1().Pods(ns).Create(ctx, nodePod(t, d), metav1.CreateOptions{})
		}
		if job, err := f.kube.BatchV1().Jobs(ns).Get(ctx, "fb-fallback", metav1.GetOptions{}); err == nil && len(job.Status.Conditions) == 0 {
			pod := jobPodFor(job, &jobargs.Result{Op: jobargs.OpFallback, BlockHeight: 100})
			_, _ = f.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			job.Status.Conditions = append(job.Status.Conditions, batchJobCondition("Complete", "", ""))
			_, _ = f.kube.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{})
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, _ := f.cita.CitacloudV1().BlockHeightFallbacks(ns).Get(ctx, "fb", metav1.GetOptions{})
	if got.Status.Status != citav1.PhaseComplete {
		t.Fatalf("status %s step %s: %s", got.Status.Status, got.Status.Step, got.Status.Message)
	}
	if dep, _ := f.kube.AppsV1().Deployments(ns).Get(ctx, "py-node0", metav1.GetOptions{}); *dep.Spec.Replicas != 1 {
		t.Fatalf("replicas %d", *dep.Spec.Replicas)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	for _, k := range f.c.kinds {
		if !k.queue.ShuttingDown() {
			t.Errorf("queue %s still running", k.name)
		}
	}
	_ = cache.ObjectName{}
}
