package operations

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

// edit returns the objects with the first of type T changed by fn.
func edit[T runtime.Object](objs []runtime.Object, fn func(T)) []runtime.Object {
	for _, o := range objs {
		if x, ok := o.(T); ok {
			fn(x)
			return objs
		}
	}
	panic("no object to edit")
}

func without(objs []runtime.Object, drop func(runtime.Object) bool) []runtime.Object {
	var out []runtime.Object
	for _, o := range objs {
		if !drop(o) {
			out = append(out, o)
		}
	}
	return out
}

func named(name string) func(runtime.Object) bool {
	return func(o runtime.Object) bool {
		m, ok := o.(metav1.Object)
		return ok && m.GetName() == name
	}
}

func restoreFrom(d deployed, backup, snapshot string) *citav1.Restore {
	return &citav1.Restore{ObjectMeta: meta0("rs"), Spec: citav1.RestoreSpec{NodeTarget: nodeTarget(d), NodeJobOptions: stopAndStart(), JobOptions: jobDefaults(), Backup: backup, Snapshot: snapshot}}
}

func completeBackup(name, chain string, phase citav1.Phase) []runtime.Object {
	b := &citav1.Backup{ObjectMeta: meta0(name), Spec: citav1.BackupSpec{NodeTarget: citav1.NodeTarget{Chain: chain, Node: "x", DeployMethod: citav1.DeployMethodCloudConfig}}}
	b.Status.Status = phase
	b.Status.PVC = name
	return []runtime.Object{b, nodetest.PVC(name, inCluster)}
}

// TestBadInputTouchesNothing: each case ends Failed with a reason naming
// the problem and a Warning event, and not one write reaches a workload,
// a pod, a Job or a PVC.
func TestBadInputTouchesNothing(t *testing.T) {
	cc, helm, py := deployments()[0], deployments()[1], deployments()[2]
	kindOf := func(o object) string {
		gvks, _, _ := scheme().ObjectKinds(o)
		return gvks[0].Kind
	}
	cases := map[string]struct {
		cr      object
		objects []runtime.Object
		want    string
	}{
		"cloud-config node missing": {
			cr: fallbackOn(cc), objects: nil,
			want: "node StatefulSet app-rivspace/test-chain-node0 does not exist",
		},
		"helm chain StatefulSet missing": {
			cr: fallbackOn(helm), objects: nodetest.PythonNode("py-chain", "py-node0", inCluster),
			want: "chain StatefulSet app-rivspace/helm-chain does not exist",
		},
		"python Deployment missing": {
			cr: fallbackOn(py), objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster),
			want: "node Deployment app-rivspace/py-node0 does not exist",
		},
		"cloud-config pointing at a Deployment": {
			cr: fallbackOn(deployed{method: citav1.DeployMethodCloudConfig, chain: "py-chain", node: "py-node0"}), objects: nodetest.PythonNode("py-chain", "py-node0", inCluster),
			want: "is a Deployment, not a StatefulSet: check deployMethod",
		},
		"python pointing at a StatefulSet": {
			cr: fallbackOn(deployed{method: citav1.DeployMethodPython, chain: "test-chain", node: "test-chain-node0"}), objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster),
			want: "is a StatefulSet, not a Deployment: check deployMethod",
		},
		"no datadir volume": {
			cr: fallbackOn(cc),
			objects: edit(nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster), func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates = nil
			}),
			want: `StatefulSet/test-chain-node0 has no "datadir" volume`,
		},
		"datadir is not a PVC": {
			cr: fallbackOn(py),
			objects: edit(nodetest.PythonNode("py-chain", "py-node0", inCluster), func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
			}),
			want: `volume "datadir" is not a PersistentVolumeClaim`,
		},
		"no container mounts datadir": {
			cr: fallbackOn(helm),
			objects: edit(nodetest.HelmChain("helm-chain", 3, inCluster), func(s *appsv1.StatefulSet) {
				for i := range s.Spec.Template.Spec.Containers {
					s.Spec.Template.Spec.Containers[i].VolumeMounts = nil
				}
			}),
			want: `no container mounts the "datadir" volume`,
		},
		"data PVC missing": {
			cr: fallbackOn(cc), objects: without(nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster), named("datadir-test-chain-node0-0")),
			want: "data PVC app-rivspace/datadir-test-chain-node0-0 does not exist",
		},
		"config ConfigMap missing": {
			cr: fallbackOn(cc), objects: without(nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster), named("test-chain-node0-config")),
			want: "config ConfigMap app-rivspace/test-chain-node0-config does not exist",
		},
		"StatefulSet deletes its PVCs when scaled": {
			cr: fallbackOn(cc),
			objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster,
				nodetest.PVCRetention("", appsv1.DeletePersistentVolumeClaimRetentionPolicyType)),
			want: "whenScaled: Delete: scaling it to 0 would delete the node's data",
		},
		"helm node is not a pod of the chain": {
			cr:      fallbackOn(deployed{method: citav1.DeployMethodHelm, chain: "helm-chain", node: "other-1"}),
			objects: nodetest.HelmChain("helm-chain", 3, inCluster),
			want:    `node "other-1" is not a pod of the chain's StatefulSet helm-chain`,
		},
		"python Deployment of another chain": {
			cr:      fallbackOn(deployed{method: citav1.DeployMethodPython, chain: "wrong-chain", node: "py-node0"}),
			objects: nodetest.PythonNode("py-chain", "py-node0", inCluster),
			want:    `belongs to chain "py-chain", not "wrong-chain"`,
		},
		"restore: backup missing": {
			cr: restoreFrom(cc, "nope", ""), objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster),
			want: "Backup app-rivspace/nope does not exist",
		},
		"restore: backup not complete": {
			cr: restoreFrom(cc, "b", ""), objects: append(nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster), completeBackup("b", "test-chain", citav1.PhaseActive)...),
			want: "Backup b is not Complete (it is Active)",
		},
		"restore: backup failed": {
			cr: restoreFrom(cc, "b", ""), objects: append(nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster), completeBackup("b", "test-chain", citav1.PhaseFailed)...),
			want: "Backup b is not Complete (it is Failed)",
		},
		"restore: backup of another chain": {
			cr: restoreFrom(cc, "b", ""), objects: append(nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster), completeBackup("b", "other-chain", citav1.PhaseComplete)...),
			want: `Backup b is of chain "other-chain", not "test-chain"`,
		},
		"restore: backup PVC gone": {
			cr: restoreFrom(cc, "b", ""), objects: without(append(nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster), completeBackup("b", "test-chain", citav1.PhaseComplete)...), func(o runtime.Object) bool {
				_, isPVC := o.(*corev1.PersistentVolumeClaim)
				return isPVC && named("b")(o)
			}),
			want: "the PVC b of Backup b does not exist",
		},
		"restore: snapshot missing": {
			cr: restoreFrom(cc, "", "snap"), objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster),
			want: "Snapshot app-rivspace/snap does not exist",
		},
		"restore: neither backup nor snapshot": {
			cr: restoreFrom(cc, "", ""), objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster),
			want: "exactly one of spec.backup or spec.snapshot",
		},
		"backup: PVC name taken by someone else's claim": {
			cr: backupNamed("bk", cc, t0), objects: append(nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster), nodetest.PVC("bk", inCluster, nodetest.Size("1Gi"))),
			want: "PVC app-rivspace/bk already exists and does not belong to this Backup",
		},
		"podAffinityFlag and the machine is gone": {
			cr: func() object {
				cr := fallbackOn(cc)
				cr.Spec.PodAffinityFlag = ptr.To(true)
				return cr
			}(),
			objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster),
			want:    "the machine machine-a that node test-chain-node0 ran on is gone",
		},
		"podAffinityFlag on a node with no pod": {
			cr: func() object {
				cr := fallbackOn(cc)
				cr.Spec.PodAffinityFlag = ptr.To(true)
				return cr
			}(),
			objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster, nodetest.Stopped()),
			want:    "no pod of node test-chain-node0 is scheduled",
		},
		"Direct fallback on a running node": {
			cr: func() object {
				cr := fallbackOn(cc)
				cr.Spec.Action = citav1.ActionDirect
				return cr
			}(),
			objects: nodetest.CloudConfigNode("test-chain", "test-chain-node0", inCluster),
			want:    "action Direct needs the node stopped, but its pod test-chain-node0-0 exists",
		},
		"switchover: node without an account volume": {
			cr: switchover("sw", "node0", "node1"),
			objects: append(edit(nodetest.CloudConfigNode("test-chain", "node0", inCluster), func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Volumes = s.Spec.Template.Spec.Volumes[1:]
			}), nodetest.CloudConfigNode("test-chain", "node1", inCluster)...),
			want: `node node0 has no "node-account" ConfigMap volume`,
		},
		"switchover: dest node missing": {
			cr: switchover("sw", "node0", "node1"), objects: nodetest.CloudConfigNode("test-chain", "node0", inCluster),
			want: "node StatefulSet app-rivspace/node1 does not exist",
		},
		"switchover: python nodes": {
			cr: switchover("sw", "py-node0", "py-node1"), objects: append(nodetest.PythonNode("test-chain", "py-node0", inCluster), nodetest.PythonNode("test-chain", "py-node1", inCluster)[0]),
			want: "is a Deployment, not a StatefulSet",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, append([]runtime.Object{tc.cr}, tc.objects...)...)
			kind := kindOf(tc.cr)
			for range 4 {
				f.mustSync(kind, tc.cr.GetName())
			}
			st := f.status(tc.cr)
			assertFailed(t, st, ReasonInvalid, tc.want)
			for _, w := range f.writes() {
				if !strings.Contains(w, strings.ToLower(kind)+"s") {
					t.Errorf("bad input caused a write outside the CR: %s", w)
				}
			}
			if fins := f.cr(tc.cr).GetFinalizers(); len(fins) != 0 {
				t.Errorf("finalizer left: %v", fins)
			}
			events := strings.Join(f.events(), "\n")
			if !strings.Contains(events, "Warning") || !strings.Contains(events, tc.want) {
				t.Errorf("no Warning event naming the problem in:\n%s", events)
			}
		})
	}
}

// TestLongNameGetsAShortenedJobName: a CR whose name is too long for a Job
// (63 characters with the job-name label) runs with a deterministic
// shortened name instead of failing.
func TestLongNameGetsAShortenedJobName(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	cr.Name = strings.Repeat("very-long-operation-name-", 8) + "x"
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	f.mustSync("BlockHeightFallback", cr.Name)
	f.mustSync("BlockHeightFallback", cr.Name)
	f.deletePod(d.pod)
	f.mustSync("BlockHeightFallback", cr.Name)
	st := f.status(cr)
	if st.Job == nil || len(st.Job.Name) > 63 || !f.jobExists(st.Job.Name) {
		t.Fatalf("job %+v", st.Job)
	}
	f.start() // the restarted operator finds the same Job
	f.mustSync("BlockHeightFallback", cr.Name)
	if jobs := mustItems(t, must(f.kube.Tracker().List(jobsGVR, jobsGVK, ns))); len(jobs) != 1 {
		t.Fatalf("%d Jobs", len(jobs))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
