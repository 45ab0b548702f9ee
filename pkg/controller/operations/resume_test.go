package operations

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	core "k8s.io/client-go/testing"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// world plays the rest of the cluster between syncs: the kubelet removes the
// pods of a stopped node, the Job runs to success, the garbage collector
// removes the pods of a deleted Job.
func world(f *fixture, d deployed, uid string, jobName string) {
	if workloadReplicas(f, d) == 0 {
		f.deletePodsOf(workloadKey(d))
	}
	if f.jobExists(jobName) {
		if len(f.c.jobPods(uid)) == 0 {
			f.finishJob(jobName, true, &jobargs.Result{Op: jobargs.OpFallback})
		}
	} else {
		for _, p := range f.c.jobPods(uid) {
			f.deletePod(p.Name)
		}
	}
}

// TestResumeAfterRestartAtEveryStep: the operator is restarted (fresh caches
// from the cluster, a new controller) after k syncs, for every k, and once
// more with the status write of sync k lost, as when the process dies right
// after a workload write. Each run finishes with exactly one stop, one Job
// and one start, and the node at its recorded replicas.
func TestResumeAfterRestartAtEveryStep(t *testing.T) {
	for _, d := range deployments() {
		for k := 0; k <= 8; k++ {
			for _, lose := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/restart-after-%d/lose-status-%v", d.method, k, lose), func(t *testing.T) {
					cr := fallbackOn(d)
					f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
					if lose {
						n := 0
						f.cita.PrependReactor("update", "blockheightfallbacks", func(a core.Action) (bool, runtime.Object, error) {
							if a.GetSubresource() != "status" {
								return false, nil, nil
							}
							n++
							if n == k {
								return true, nil, apierrors.NewServiceUnavailable("operator killed")
							}
							return false, nil, nil
						})
					}
					for range k {
						_ = f.sync("BlockHeightFallback", "fb")
						world(f, d, "uid-fb", "fb-fallback")
					}
					f.start() // restart
					for range 20 {
						if err := f.sync("BlockHeightFallback", "fb"); err != nil && !errors.Is(err, errLost) && !apierrors.IsServiceUnavailable(err) {
							t.Fatalf("sync after restart: %v", err)
						}
						world(f, d, "uid-fb", "fb-fallback")
						if st := f.status(cr); ended(st) && len(f.cr(cr).GetFinalizers()) == 0 {
							break
						}
					}
					st := f.status(cr)
					if st.Status != citav1.PhaseComplete {
						t.Fatalf("status %s: %s", st.Status, st.Message)
					}
					assertStartedWith(t, f, d, d.replicas)
					if n := successfulCreates(f, "jobs"); n != 1 {
						t.Errorf("%d Jobs created, want 1", n)
					}
					if n := stopPatches(f); n != 1 {
						t.Errorf("%d scale-downs, want 1 (a second would overwrite the recorded replicas)", n)
					}
				})
			}
		}
	}
}

var errLost = errors.New("lost")

// successfulCreates counts creates of a resource that were stored.
func successfulCreates(f *fixture, resource string) int {
	list, err := f.kube.Tracker().List(jobsGVR, jobsGVK, ns)
	if err != nil || resource != "jobs" {
		return -1
	}
	items, _ := metaItems(list)
	return len(items) + deletedJobs(f)
}

// stopPatches counts workload patches that scale to 0.
func stopPatches(f *fixture) int {
	n := 0
	for _, a := range f.kube.Actions() {
		pa, ok := a.(core.PatchAction)
		if !ok || (a.GetResource().Resource != "statefulsets" && a.GetResource().Resource != "deployments") {
			continue
		}
		if strings.Contains(string(pa.GetPatch()), `"spec":{"replicas":0}`) {
			n++
		}
	}
	return n
}

func deletedJobs(f *fixture) int {
	n := 0
	for _, a := range f.kube.Actions() {
		if a.GetVerb() == "delete" && a.GetResource().Resource == "jobs" {
			n++
		}
	}
	return n
}

func metaItems(list runtime.Object) ([]metav1.Object, error) {
	objs, err := metaExtract(list)
	if err != nil {
		return nil, err
	}
	out := make([]metav1.Object, 0, len(objs))
	for _, o := range objs {
		if m, ok := o.(metav1.Object); ok {
			out = append(out, m)
		}
	}
	return out, nil
}
