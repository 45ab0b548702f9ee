package operations

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	citaclient "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/typed/citacloud/v1"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// notOperations are the API's kinds that are not operations (long-lived
// kinds with controllers of their own).
var notOperations = map[string]bool{"CitaNode": true}

// TestTableIsTheAPI: every kind of the API (its generated CRDs) is in the
// table of operation kinds with the CRD's resource name, and the table holds
// nothing else, so a kind added on one side only fails here.
func TestTableIsTheAPI(t *testing.T) {
	files, err := filepath.Glob("../../../manifests/crds/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs found: %v", err)
	}
	var api []string
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if crd.Spec.Group != citav1.GroupName || notOperations[crd.Spec.Names.Kind] {
			continue
		}
		api = append(api, crd.Spec.Names.Kind+" "+crd.Spec.Names.Plural)
	}
	var declared []string
	suffixes := map[string]string{}
	for _, d := range table {
		declared = append(declared, d.name+" "+d.resource)
		if other, taken := suffixes[d.jobSuffix]; taken {
			t.Errorf("%s and %s share the Job suffix %q", d.name, other, d.jobSuffix)
		}
		suffixes[d.jobSuffix] = d.name
	}
	slices.Sort(api)
	if diff := cmp.Diff(api, declared); diff != "" {
		t.Errorf("operation kinds of the API (-) and of the table (+):\n%s", diff)
	}
	for _, d := range table {
		if notOperations[d.name] {
			t.Errorf("%s is both an operation kind and not one", d.name)
		}
	}
}

// TestAKindNeedsJobOrRun: a kind that neither runs a Job nor does its work
// itself (or both) is refused when it is declared.
func TestAKindNeedsJobOrRun(t *testing.T) {
	for name, h := range map[string]hooks[*citav1.ChangeOwner]{
		"neither": {},
		"both": {Job: relabelJob, Run: func(_ context.Context, _ *Controller, _ *operation, _ *citav1.ChangeOwner, _ []*nodeops.Node) (bool, error) {
			return true, nil
		}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("registered")
				}
			}()
			saved := table
			defer func() { table = saved }()
			register(kindSpec[*citav1.ChangeOwner]{Name: "Relabel", hooks: h})
		})
	}
}

// relabel is one more operation kind, declared here through the table alone:
// a chown of the node root to 7:7 under its own kind name, reusing the
// ChangeOwner API type.
var relabel = declare(kindSpec[*citav1.ChangeOwner]{
	Name: "Relabel", Resource: "changeowners", JobSuffix: "relabel",
	Informer: func(i citainformers.Interface) cache.SharedIndexInformer { return i.ChangeOwners().Informer() },
	Client: func(c citaclient.CitacloudV1Interface, ns string) crClient[*citav1.ChangeOwner] {
		return c.ChangeOwners(ns)
	},
	Operation: func(cr *citav1.ChangeOwner) *operation {
		return nodeOperation(cr, &cr.Status, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions)
	},
	hooks: hooks[*citav1.ChangeOwner]{Job: relabelJob},
})

func relabelJob(*Controller, *citav1.ChangeOwner, []*nodeops.Node) (jobWork, error) {
	return jobWork{Args: jobargs.Args{Op: jobargs.OpChown, NodeRoot: jobargs.NodeRootMountPath, UID: 7, GID: 7}}, nil
}

// TestAKindDeclaredThroughTheTableAlone: the seam. A kind that exists only as
// a declaration runs through the machine to Complete on every deploy
// method: its node locked and stopped, its Job named after it, its node
// started again at its replicas and released.
func TestAKindDeclaredThroughTheTableAlone(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			cr := &citav1.ChangeOwner{ObjectMeta: meta0("rl"), Spec: citav1.ChangeOwnerSpec{
				NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults(), UID: ptr.To[int64](1000), GID: ptr.To[int64](1000)}}
			f := newFixtureOf(t, []*declaration{relabel}, append([]runtime.Object{cr}, d.objects...)...)
			f.mustSync("Relabel", "rl") // finalizer
			f.mustSync("Relabel", "rl") // lock + stop
			if got := workloadReplicas(f, d); got != 0 {
				t.Fatalf("workload at %d replicas after the stop", got)
			}
			if h, held := nodeops.Held(workloadObject(f, d)); !held || h.Kind != "Relabel" || h.Name != "rl" {
				t.Fatalf("holder %v, held %v", h, held)
			}
			f.deletePod(d.pod)
			if d.method == citav1.DeployMethodHelm {
				f.deletePod("helm-chain-0")
			}
			f.mustSync("Relabel", "rl") // the Job
			job := f.job("rl-relabel")
			if got := strings.Join(job.Spec.Template.Spec.Containers[0].Command, " "); !strings.Contains(got, "chown") || !strings.Contains(got, "--uid=7") {
				t.Fatalf("Job command %q", got)
			}
			f.finishJob("rl-relabel", true, &jobargs.Result{Op: jobargs.OpChown, Changed: 3})
			f.mustSync("Relabel", "rl") // outcome + start
			f.mustSync("Relabel", "rl") // node Ready
			st := f.status(cr)
			if st.Status != citav1.PhaseComplete || st.Step != citav1.StepDone {
				t.Fatalf("status %s/%s: %s", st.Status, st.Step, st.Message)
			}
			if got := workloadReplicas(f, d); got != d.replicas {
				t.Fatalf("workload back at %d replicas, want %d", got, d.replicas)
			}
			if a := workloadAnnotations(f, d); len(a) != 0 {
				t.Fatalf("annotations left on the workload: %v", a)
			}
		})
	}
}

func workloadObject(f *fixture, d deployed) metav1.Object {
	kind, name, _ := strings.Cut(d.workload, " ")
	if kind == "deployments" {
		return f.deployment(name)
	}
	return f.statefulSet(name)
}
