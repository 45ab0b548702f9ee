package operations

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

func TestWrittenKeepsSyncsOffAStaleCache(t *testing.T) {
	var w written
	obj := func(rv string) metav1.Object { return &metav1.ObjectMeta{UID: "u", ResourceVersion: rv} }
	if w.behind(obj("5")) {
		t.Fatal("behind before any write")
	}
	w.record("u", "10")
	w.record("u", "8") // an older write's answer arriving late changes nothing
	if !w.behind(obj("9")) {
		t.Fatal("a cache at 9 after our write of 10 is not behind")
	}
	if w.behind(obj("10")) {
		t.Fatal("a cache at our write is behind")
	}
	if w.behind(obj("9")) {
		t.Fatal("caught up once, the record is gone: a later sync must not wait again")
	}
	w.record("u", "20")
	w.forget("u")
	if w.behind(obj("11")) {
		t.Fatal("a forgotten object is still waited for")
	}
	w.record("u", "not-a-number")
	if w.behind(obj("x")) {
		t.Fatal("an opaque resourceVersion is never behind")
	}
}

// The Job's TTL is patched once: a sync that sees the Job before the cache
// has shown the TTL this controller set (the sync after a failed finalizer
// patch, say) does not patch it again.
func TestJobTTLPatchedOnceOverAStaleCache(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	f.finishJob("fb-fallback", true, &jobargs.Result{Op: jobargs.OpFallback})
	f.mustSync("BlockHeightFallback", "fb") // node started, outcome written
	f.mustSync("BlockHeightFallback", "fb") // node Ready
	if st := f.status(cr); st.Status != citav1.PhaseComplete {
		t.Fatalf("status %s, want Complete", st.Status)
	}
	stale := f.job("fb-fallback").DeepCopy()
	failing := true
	f.cita.PrependReactor("patch", "blockheightfallbacks", func(core.Action) (bool, runtime.Object, error) {
		if failing {
			return true, nil, errors.New("apiserver unavailable")
		}
		return false, nil, nil
	})
	if err := f.sync("BlockHeightFallback", "fb"); err == nil {
		t.Fatal("the finalizer patch failed, the sync did not say so")
	}
	if ttl := f.job("fb-fallback").Spec.TTLSecondsAfterFinished; ttl == nil {
		t.Fatal("TTL not set")
	}
	// The Job's watch event is late: the cache still shows it without TTL.
	if err := f.kubeInf.Batch().V1().Jobs().Informer().GetIndexer().Update(stale); err != nil {
		t.Fatal(err)
	}
	failing = false
	f.clearWrites()
	if err := f.c.syncOperation(f.ctx, f.c.kindByName["BlockHeightFallback"], cache.ObjectName{Namespace: ns, Name: "fb"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"patch blockheightfallbacks fb"}, f.writes()); diff != "" {
		t.Errorf("writes of the retry (-want +got):\n%s", diff)
	}
}

// A lock refused as a conflict (the StatefulSet controller wrote the
// workload's status after the cache last saw it) writes nothing else: no
// status built on the stale cache, no event. Retried, the sync writes what
// a sync without the conflict writes.
func TestConflictWritesNoStatus(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	f.mustSync("BlockHeightFallback", "fb") // finalizer
	f.events()
	refuse := true
	f.kube.PrependReactor("patch", "statefulsets", func(a core.Action) (bool, runtime.Object, error) {
		if refuse {
			refuse = false
			return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), "x", errors.New("stale"))
		}
		return false, nil, nil
	})
	f.clearWrites()
	if err := f.sync("BlockHeightFallback", "fb"); !apierrors.IsConflict(err) {
		t.Fatalf("sync: %v, want the conflict", err)
	}
	if diff := cmp.Diff([]string{"patch " + d.workload}, f.writes()); diff != "" {
		t.Errorf("writes of the refused sync (-want +got):\n%s", diff)
	}
	if ev := f.events(); len(ev) > 0 {
		t.Errorf("events of the refused sync: %v", ev)
	}
	if st := f.status(cr); st.Status != "" {
		t.Errorf("status written after the conflict: %s %s", st.Status, st.Step)
	}
	f.clearWrites()
	f.mustSync("BlockHeightFallback", "fb")
	if diff := cmp.Diff([]string{"patch " + d.workload, "update blockheightfallbacks/status fb"}, f.writes()); diff != "" {
		t.Errorf("writes of the retry (-want +got):\n%s", diff)
	}
	if st := f.status(cr); st.Step != citav1.StepStopping {
		t.Errorf("step %s after the retry, want %s", st.Step, citav1.StepStopping)
	}
}

// A sync that sees the operation Running before its cache shows the Job it
// created waits for the cache instead of creating the Job again; a Job
// still missing after createdWait (deleted before the cache saw it) is
// created again.
func TestJobCreatedOnceOverAStaleCache(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	runUntilJob(t, f, d)
	// The Job's watch event is late: the cache does not show it yet.
	jobs := f.kubeInf.Batch().V1().Jobs().Informer().GetIndexer()
	if err := jobs.Delete(f.job("fb-fallback")); err != nil {
		t.Fatal(err)
	}
	f.clearWrites()
	f.mustSync("BlockHeightFallback", "fb")
	if w := f.writes(); len(w) > 0 {
		t.Errorf("writes while the cache lags the create: %v", w)
	}
	f.clock.Step(createdWait)
	if err := jobs.Delete(f.job("fb-fallback")); err != nil {
		t.Fatal(err)
	}
	f.clearWrites()
	f.mustSync("BlockHeightFallback", "fb")
	if n := countWrites(f, "create jobs fb-fallback"); n != 1 {
		t.Errorf("%d Job creates once the create is no longer trusted, want 1 (writes %v)", n, f.writes())
	}
}

// The workload's own controller writes its status while the node is
// stopped, under load long after the node's pods are gone. A start built
// from a cache that has not seen that write still goes through, once: it
// depends on the lock and the replicas, not on the resourceVersion.
func TestStartAfterTheWorkloadControllerWroteStatus(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			cr := fallbackOn(d)
			f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
			runUntilJob(t, f, d)
			f.finishJob("fb-fallback", true, &jobargs.Result{Op: jobargs.OpFallback})

			// The write reaches the store, not yet the cache.
			resource, name, _ := strings.Cut(d.workload, " ")
			gvr := appsv1.SchemeGroupVersion.WithResource(resource)
			stored, err := f.kube.Tracker().Get(gvr, ns, name)
			if err != nil {
				t.Fatal(err)
			}
			switch w := stored.(type) {
			case *appsv1.StatefulSet:
				w.Status.Replicas, w.Status.ObservedGeneration = 0, w.Generation
			case *appsv1.Deployment:
				w.Status.Replicas, w.Status.ObservedGeneration = 0, w.Generation
			}
			m, _ := meta.Accessor(stored)
			m.SetResourceVersion("9000000")
			if err := f.kube.Tracker().Update(gvr, stored, ns); err != nil {
				t.Fatal(err)
			}

			f.clearWrites()
			f.mustSync("BlockHeightFallback", "fb")
			if diff := cmp.Diff([]string{"patch " + d.workload}, f.workloadWrites()); diff != "" {
				t.Errorf("workload writes of the start (-want +got):\n%s", diff)
			}
			assertStartedWith(t, f, d, d.replicas)
			f.mustSync("BlockHeightFallback", "fb") // node Ready
			if st := f.status(cr); st.Status != citav1.PhaseComplete {
				t.Errorf("status %s %s, want Complete", st.Status, st.Step)
			}
		})
	}
}
