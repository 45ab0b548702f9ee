package nodeops

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

var backup1 = Holder{Kind: "Backup", Name: "b1", UID: "uid-b1"}

// stsWith is a cloud-config StatefulSet at replicas with annotations.
func stsWith(replicas *int32, annotations map[string]string) *appsv1.StatefulSet {
	s := cloudConfigSTS("node0")
	s.Spec.Replicas = replicas
	s.Annotations = annotations
	return s
}

func decodePatch(t *testing.T, patch []byte) map[string]any {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(patch, &got); err != nil {
		t.Fatalf("patch %s is not JSON: %v", patch, err)
	}
	return got
}

func TestLockPatch(t *testing.T) {
	tests := map[string]struct {
		sts  *appsv1.StatefulSet
		req  LockRequest
		want map[string]any
	}{
		"lock only: holder and UID, resourceVersion carried, no spec": {
			sts: stsWith(ptr.To[int32](1), nil),
			req: LockRequest{Holder: backup1},
			want: map[string]any{"metadata": map[string]any{
				"resourceVersion": "7",
				"annotations": map[string]any{
					AnnotationHolder:    "Backup/b1",
					AnnotationHolderUID: "uid-b1",
				},
			}},
		},
		"stop: records replicas and machine, scales to 0 in the same write": {
			sts: stsWith(ptr.To[int32](3), nil),
			req: LockRequest{Holder: backup1, Stop: true, Machine: "machine-a"},
			want: map[string]any{
				"metadata": map[string]any{
					"resourceVersion": "7",
					"annotations": map[string]any{
						AnnotationHolder:    "Backup/b1",
						AnnotationHolderUID: "uid-b1",
						AnnotationReplicas:  "3",
						AnnotationMachine:   "machine-a",
					},
				},
				"spec": map[string]any{"replicas": float64(0)},
			},
		},
		"stop with default replicas and no machine": {
			sts: stsWith(nil, nil),
			req: LockRequest{Holder: backup1, Stop: true},
			want: map[string]any{
				"metadata": map[string]any{
					"resourceVersion": "7",
					"annotations": map[string]any{
						AnnotationHolder:    "Backup/b1",
						AnnotationHolderUID: "uid-b1",
						AnnotationReplicas:  "1",
						AnnotationMachine:   "",
					},
				},
				"spec": map[string]any{"replicas": float64(0)},
			},
		},
		"switchover: account recorded with the stop": {
			sts: stsWith(ptr.To[int32](1), nil),
			req: LockRequest{Holder: Holder{Kind: "Switchover", Name: "s1", UID: "uid-s1"}, Stop: true, Machine: "m", Account: "node0-account"},
			want: map[string]any{
				"metadata": map[string]any{
					"resourceVersion": "7",
					"annotations": map[string]any{
						AnnotationHolder:    "Switchover/s1",
						AnnotationHolderUID: "uid-s1",
						AnnotationReplicas:  "1",
						AnnotationMachine:   "m",
						AnnotationAccount:   "node0-account",
					},
				},
				"spec": map[string]any{"replicas": float64(0)},
			},
		},
		"a single-node operation records its node": {
			sts: stsWith(ptr.To[int32](2), nil),
			req: LockRequest{Holder: backup1, Stop: true, Machine: "m", Node: &Target{Namespace: "ns", Chain: "chain-a", Name: "node0", Method: citav1.DeployMethodCloudConfig}},
			want: map[string]any{
				"metadata": map[string]any{
					"resourceVersion": "7",
					"annotations": map[string]any{
						AnnotationHolder:    "Backup/b1",
						AnnotationHolderUID: "uid-b1",
						AnnotationReplicas:  "2",
						AnnotationMachine:   "m",
						AnnotationNode:      "cloud-config/chain-a/node0",
					},
				},
				"spec": map[string]any{"replicas": float64(0)},
			},
		},
		"account without stop": {
			sts: stsWith(ptr.To[int32](1), nil),
			req: LockRequest{Holder: backup1, Account: "acc"},
			want: map[string]any{"metadata": map[string]any{
				"resourceVersion": "7",
				"annotations": map[string]any{
					AnnotationHolder:    "Backup/b1",
					AnnotationHolderUID: "uid-b1",
					AnnotationAccount:   "acc",
				},
			}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := decodePatch(t, LockPatch(StatefulSetWorkload(tc.sts), tc.req))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("LockPatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReleasePatch(t *testing.T) {
	allNull := map[string]any{
		AnnotationHolder: nil, AnnotationHolderUID: nil,
		AnnotationReplicas: nil, AnnotationMachine: nil, AnnotationAccount: nil, AnnotationNode: nil,
	}
	release := func(spec map[string]any) map[string]any {
		p := map[string]any{"metadata": map[string]any{"resourceVersion": "7", "annotations": allNull}}
		if spec != nil {
			p["spec"] = spec
		}
		return p
	}
	locked := map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1"}
	stopped := func(replicas string) map[string]string {
		return map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1", AnnotationReplicas: replicas, AnnotationMachine: "machine-a"}
	}
	tests := map[string]struct {
		sts  *appsv1.StatefulSet
		want map[string]any
	}{
		"stopped and still at 0: restores the recorded replicas": {
			sts:  stsWith(ptr.To[int32](0), stopped("3")),
			want: release(map[string]any{"replicas": float64(3)}),
		},
		"stopped at 0 replicas before: stays at 0": {
			sts:  stsWith(ptr.To[int32](0), stopped("0")),
			want: release(map[string]any{"replicas": float64(0)}),
		},
		"stopped, then scaled by someone else: their count is left alone": {
			sts:  stsWith(ptr.To[int32](2), stopped("3")),
			want: release(nil),
		},
		"locked, never stopped: only the annotations go": {
			sts:  stsWith(ptr.To[int32](0), locked),
			want: release(nil),
		},
		"unreadable recorded replicas: starts one": {
			sts:  stsWith(ptr.To[int32](0), stopped("three")),
			want: release(map[string]any{"replicas": float64(1)}),
		},
		"negative recorded replicas: starts one": {
			sts:  stsWith(ptr.To[int32](0), stopped("-2")),
			want: release(map[string]any{"replicas": float64(1)}),
		},
		"not locked at all: still removes every annotation": {
			sts:  stsWith(ptr.To[int32](1), nil),
			want: release(nil),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := decodePatch(t, ReleasePatch(StatefulSetWorkload(tc.sts)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ReleasePatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordedState(t *testing.T) {
	type state struct {
		Holder        Holder
		Held          bool
		HeldByBackup1 bool
		Replicas      int32
		Stopped       bool
		Machine       string
		Account       string
		HolderString  string
	}
	tests := map[string]struct {
		annotations map[string]string
		want        state
	}{
		"free": {
			want: state{},
		},
		"locked by backup1": {
			annotations: map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1"},
			want:        state{Holder: backup1, Held: true, HeldByBackup1: true, HolderString: "Backup/b1"},
		},
		"locked by a namesake (another UID)": {
			annotations: map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-old"},
			want:        state{Holder: Holder{Kind: "Backup", Name: "b1", UID: "uid-old"}, Held: true, HolderString: "Backup/b1"},
		},
		"holder value without a kind": {
			annotations: map[string]string{AnnotationHolder: "b1", AnnotationHolderUID: "uid-x"},
			want:        state{Holder: Holder{UID: "uid-x"}, Held: true, HolderString: "/"},
		},
		"stopped by a switchover": {
			annotations: map[string]string{
				AnnotationHolder: "Switchover/s1", AnnotationHolderUID: "uid-s1",
				AnnotationReplicas: "2", AnnotationMachine: "machine-a", AnnotationAccount: "node0-account",
			},
			want: state{
				Holder: Holder{Kind: "Switchover", Name: "s1", UID: "uid-s1"}, Held: true, HolderString: "Switchover/s1",
				Replicas: 2, Stopped: true, Machine: "machine-a", Account: "node0-account",
			},
		},
		"stopped, unreadable replicas: one": {
			annotations: map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1", AnnotationReplicas: ""},
			want:        state{Holder: backup1, Held: true, HeldByBackup1: true, HolderString: "Backup/b1", Replicas: 1, Stopped: true},
		},
		"stopped, replicas beyond int32: one": {
			annotations: map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1", AnnotationReplicas: "4294967296"},
			want:        state{Holder: backup1, Held: true, HeldByBackup1: true, HolderString: "Backup/b1", Replicas: 1, Stopped: true},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := StatefulSetWorkload(stsWith(ptr.To[int32](0), tc.annotations))
			var got state
			got.Holder, got.Held = HolderOf(w)
			got.HolderString = ""
			if got.Held {
				got.HolderString = got.Holder.String()
			}
			got.HeldByBackup1 = HeldBy(w, backup1)
			got.Replicas, got.Stopped = StoppedReplicas(w)
			got.Machine = RecordedMachine(w)
			got.Account = RecordedAccount(w)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("recorded state (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPatchWorkload applies the lock and release patches to a clientset and
// reads the workload back: the patches are merge patches that do what their
// JSON says to real objects, for both kinds of workload.
func TestPatchWorkload(t *testing.T) {
	ctx := context.Background()
	foreign := map[string]string{"deployment.kubernetes.io/revision": "4"}
	tests := map[string]struct {
		obj runtime.Object
		// get reads the object back and wraps it.
		get func(c *fake.Clientset) (*Workload, error)
	}{
		"StatefulSet": {
			obj: func() runtime.Object {
				s := cloudConfigSTS("node0")
				s.Spec.Replicas = ptr.To[int32](3)
				s.Annotations = foreign
				return s
			}(),
			get: func(c *fake.Clientset) (*Workload, error) {
				s, err := c.AppsV1().StatefulSets(ns).Get(ctx, "node0", metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				return StatefulSetWorkload(s), nil
			},
		},
		"Deployment": {
			obj: func() runtime.Object {
				d := pythonDeployment("mychain", "node1")
				d.Spec.Replicas = ptr.To[int32](3)
				d.Annotations = foreign
				return d
			}(),
			get: func(c *fake.Clientset) (*Workload, error) {
				d, err := c.AppsV1().Deployments(ns).Get(ctx, "node1", metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				return DeploymentWorkload(d), nil
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientset(tc.obj)
			w, err := tc.get(c)
			if err != nil {
				t.Fatal(err)
			}

			if _, err := PatchWorkload(ctx, c, w, ns, LockPatch(w, LockRequest{Holder: backup1, Stop: true, Machine: "machine-a"})); err != nil {
				t.Fatalf("lock: %v", err)
			}
			w, err = tc.get(c)
			if err != nil {
				t.Fatal(err)
			}
			wantLocked := map[string]string{
				"deployment.kubernetes.io/revision": "4",
				AnnotationHolder:                    "Backup/b1",
				AnnotationHolderUID:                 "uid-b1",
				AnnotationReplicas:                  "3",
				AnnotationMachine:                   "machine-a",
			}
			if diff := cmp.Diff(wantLocked, w.Object.GetAnnotations()); diff != "" {
				t.Errorf("annotations after lock (-want +got):\n%s", diff)
			}
			if w.Replicas != 0 {
				t.Errorf("replicas after stop = %d, want 0", w.Replicas)
			}
			if !HeldBy(w, backup1) || RecordedMachine(w) != "machine-a" {
				t.Errorf("after lock: HeldBy = %v, RecordedMachine = %q", HeldBy(w, backup1), RecordedMachine(w))
			}
			if r, ok := StoppedReplicas(w); r != 3 || !ok {
				t.Errorf("StoppedReplicas = %d, %v, want 3, true", r, ok)
			}

			if _, err := PatchWorkload(ctx, c, w, ns, ReleasePatch(w)); err != nil {
				t.Fatalf("release: %v", err)
			}
			w, err = tc.get(c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(foreign, w.Object.GetAnnotations()); diff != "" {
				t.Errorf("annotations after release (-want +got):\n%s", diff)
			}
			if w.Replicas != 3 {
				t.Errorf("replicas after release = %d, want 3", w.Replicas)
			}
			if _, held := HolderOf(w); held {
				t.Error("still held after release")
			}
		})
	}
}

func TestPatchWorkloadErrors(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	w := StatefulSetWorkload(cloudConfigSTS("node0"))
	w.Kind = "DaemonSet"
	_, err := PatchWorkload(ctx, c, w, ns, ReleasePatch(w))
	if err == nil || !strings.Contains(err.Error(), `unknown workload kind "DaemonSet"`) {
		t.Errorf("PatchWorkload(DaemonSet) = %v, want an unknown kind error", err)
	}
	if n := len(c.Actions()); n != 0 {
		t.Errorf("unknown kind sent %d requests, want none", n)
	}

	for name, w := range map[string]*Workload{
		"StatefulSet": StatefulSetWorkload(cloudConfigSTS("node0")),
		"Deployment":  DeploymentWorkload(pythonDeployment("mychain", "node1")),
	} {
		t.Run("missing "+name, func(t *testing.T) {
			if _, err := PatchWorkload(ctx, c, w, ns, ReleasePatch(w)); !apierrors.IsNotFound(err) {
				t.Errorf("PatchWorkload of a missing %s = %v, want NotFound", name, err)
			}
		})
	}
}

// TestRecordedNode: the node a lock recorded is read back, in the
// workload's namespace; anything else is no record.
func TestRecordedNode(t *testing.T) {
	for value, want := range map[string]*Target{
		"cloud-config/chain-a/node0": {Namespace: "ns", Chain: "chain-a", Name: "node0", Method: citav1.DeployMethodCloudConfig},
		"helm/chain-b/chain-b-1":     {Namespace: "ns", Chain: "chain-b", Name: "chain-b-1", Method: citav1.DeployMethodHelm},
		"":                           nil,
		"cloud-config/chain-a":       nil,
		"cloud-config//node0":        nil,
		"a/b/c/d":                    nil,
	} {
		sts := stsWith(ptr.To[int32](0), map[string]string{AnnotationNode: value})
		sts.Namespace = "ns"
		got, ok := RecordedNode(StatefulSetWorkload(sts))
		if want == nil {
			if ok {
				t.Errorf("%q: recorded node %+v, want none", value, got)
			}
			continue
		}
		if diff := cmp.Diff(*want, got); !ok || diff != "" {
			t.Errorf("%q: ok %v (-want +got):\n%s", value, ok, diff)
		}
	}
	// A lock patch's record reads back as the node it names.
	n := Target{Namespace: "ns", Chain: "c", Name: "n1", Method: citav1.DeployMethodPython}
	var p struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(LockPatch(StatefulSetWorkload(stsWith(ptr.To[int32](1), nil)), LockRequest{Holder: backup1, Node: &n}), &p); err != nil {
		t.Fatal(err)
	}
	sts := stsWith(ptr.To[int32](1), p.Metadata.Annotations)
	sts.Namespace = "ns"
	if got, ok := RecordedNode(StatefulSetWorkload(sts)); !ok || got != n {
		t.Errorf("round trip: %+v %v, want %+v", got, ok, n)
	}
}
