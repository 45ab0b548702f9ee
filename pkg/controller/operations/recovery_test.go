package operations

import (
	"errors"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	core "k8s.io/client-go/testing"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

// Recovery of a node root a killed Job may have left half-rewritten: the
// recovery Job is awaited, never killed, and never keeps a node down.

// A running recovery Job is never killed by the wait for the main Job's
// pods (it was, when the CR was deleted mid-run).
func TestRecoveryJobIsNotKilledByStopJob(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.runningJobPod("fb-fallback", nil)
	f.deleteCR(cr)
	f.mustSync("BlockHeightFallback", "fb")
	f.deletePod("fb-fallback-pod")
	f.mustSync("BlockHeightFallback", "fb")
	if !f.jobExists("fb-recover") {
		t.Fatal("no recovery Job")
	}
	f.runningJobPod("fb-recover", nil)
	f.clearWrites()
	f.mustSync("BlockHeightFallback", "fb")
	for _, w := range f.writes() {
		if strings.Contains(w, "fb-recover") || strings.Contains(w, "statefulsets") {
			t.Fatalf("while the recovery Job runs: %s", w)
		}
	}
	f.finishJob("fb-recover", true, &jobargs.Result{Op: jobargs.OpRecover})
	runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	assertStartedWith(t, f, d, 1)
}

// A recovery Job whose pod cannot start does not keep the node down.
func TestRecoveryJobThatCannotStart(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.finishJob("fb-fallback", false, nil) // OOM kill: no result
	for range 3 {
		_ = f.sync("BlockHeightFallback", "fb")
	}
	if !f.jobExists("fb-recover") {
		t.Fatalf("no recovery Job: %s", f.status(cr).Message)
	}
	f.runningJobPod("fb-recover", &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "registry down"})
	for range 20 {
		_ = f.sync("BlockHeightFallback", "fb")
		for _, p := range f.c.jobPods("uid-fb") {
			if !f.jobExists("fb-recover") {
				f.deletePod(p.Name) // the garbage collector
			}
		}
		f.clock.Step(time.Minute)
	}
	assertStartedWith(t, f, d, 1)
}

// A Direct fallback killed outright is recovered too: the node is stopped
// (by its owner), so the node root is checked before the lock is released.
func TestDirectKilledJobIsRecovered(t *testing.T) {
	d := deployments()[0]
	d.objects = nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster, nodetest.Stopped())
	cr := fallbackOn(d)
	cr.Spec.Action = citav1.ActionDirect
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	for range 3 {
		f.mustSync("BlockHeightFallback", "fb")
	}
	if !f.jobExists("fb-fallback") {
		t.Fatalf("no Job: %s", f.status(cr).Message)
	}
	f.finishJob("fb-fallback", false, nil)
	for range 3 {
		_ = f.sync("BlockHeightFallback", "fb")
	}
	if !f.jobExists("fb-recover") {
		t.Fatal("no recovery Job for a killed Direct fallback")
	}
}

// refuseRecoveryJobs makes the apiserver refuse every recovery Job for good,
// as an admission policy or an exhausted quota would.
func refuseRecoveryJobs(f *fixture) {
	f.kube.PrependReactor("create", "jobs", func(a core.Action) (bool, runtime.Object, error) {
		job := a.(core.CreateAction).GetObject().(*batchv1.Job)
		if !strings.Contains(job.Name, "recover") {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, job.Name, errors.New("exceeded quota: jobs"))
	})
}

// A recovery Job the apiserver refuses for good does not keep the node
// down: it is started, with a Warning saying its node root went unchecked.
func TestRefusedRecoveryJobDoesNotKeepTheNodeDown(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	refuseRecoveryJobs(f)
	f.finishJob("fb-fallback", false, nil) // killed: no termination message
	runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	assertStartedWith(t, f, d, 1)
	if events := strings.Join(f.events(), "\n"); !strings.Contains(events, "Warning RecoveryImpossible") {
		t.Errorf("events %s, want RecoveryImpossible", events)
	}
}

// The same for an orphaned node's recovery Job.
func TestRefusedOrphanRecoveryJobDoesNotKeepTheNodeDown(t *testing.T) {
	f, d, _ := stoppedThenOrphaned(t)
	refuseRecoveryJobs(f)
	f.mustSync("BlockHeightFallback", "gone")
	assertStartedWith(t, f, d, 1)
	if events := strings.Join(f.events(), "\n"); !strings.Contains(events, "Warning RecoveryImpossible") {
		t.Errorf("events %s, want RecoveryImpossible", events)
	}
}
