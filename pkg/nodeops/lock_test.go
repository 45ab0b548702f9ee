package nodeops

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

var backup1 = Holder{Kind: "Backup", Name: "b1", UID: "uid-b1"}

// stsWith is a cloud-config StatefulSet at replicas with annotations.
func stsWith(replicas *int32, annotations map[string]string) *appsv1.StatefulSet {
	s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape, nodetest.Annotations(annotations))
	s.Spec.Replicas = replicas
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
			p := LockPatch(StatefulSetWorkload(tc.sts), tc.req)
			if p.Type != types.MergePatchType {
				t.Errorf("LockPatch type = %s, want a merge patch (guarded by the resourceVersion)", p.Type)
			}
			got := decodePatch(t, p.Data)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("LockPatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReleasePatch(t *testing.T) {
	sameObject := map[string]any{"op": "test", "path": "/metadata/uid", "value": "uid-sts-node0"}
	holderIs := func(holder string) []any {
		return []any{
			sameObject,
			map[string]any{"op": "test", "path": "/metadata/annotations/citacloud.rivtower.com~1operation", "value": holder},
			map[string]any{"op": "test", "path": "/metadata/annotations/citacloud.rivtower.com~1operation-uid", "value": "uid-b1"},
		}
	}
	holderUID := holderIs("Backup/b1")
	replicasAre := func(n float64) map[string]any {
		return map[string]any{"op": "test", "path": "/spec/replicas", "value": n}
	}
	remove := func(keys ...string) []any {
		var ops []any
		for _, k := range keys {
			ops = append(ops, map[string]any{"op": "remove", "path": "/metadata/annotations/" + strings.ReplaceAll(k, "/", "~1")})
		}
		return ops
	}
	scaleTo := func(n float64) map[string]any {
		return map[string]any{"op": "replace", "path": "/spec/replicas", "value": n}
	}
	ops := func(parts ...any) []any {
		var out []any
		for _, p := range parts {
			if l, ok := p.([]any); ok {
				out = append(out, l...)
			} else {
				out = append(out, p)
			}
		}
		return out
	}
	locked := map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1"}
	stopped := func(replicas string) map[string]string {
		return map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1", AnnotationReplicas: replicas, AnnotationMachine: "machine-a"}
	}
	stoppedKeys := []string{AnnotationHolder, AnnotationHolderUID, AnnotationReplicas, AnnotationMachine}
	tests := map[string]struct {
		sts  *appsv1.StatefulSet
		want []any
	}{
		"stopped and still at 0: restores the recorded replicas": {
			sts:  stsWith(ptr.To[int32](0), stopped("3")),
			want: ops(holderUID, replicasAre(0), remove(stoppedKeys...), scaleTo(3)),
		},
		"stopped at 0 replicas before: stays at 0": {
			sts:  stsWith(ptr.To[int32](0), stopped("0")),
			want: ops(holderUID, replicasAre(0), remove(stoppedKeys...), scaleTo(0)),
		},
		"stopped, then scaled by someone else: their count is left alone": {
			sts:  stsWith(ptr.To[int32](2), stopped("3")),
			want: ops(holderUID, replicasAre(2), remove(stoppedKeys...)),
		},
		"locked, never stopped: only the annotations go": {
			sts:  stsWith(ptr.To[int32](0), locked),
			want: ops(holderUID, replicasAre(0), remove(AnnotationHolder, AnnotationHolderUID)),
		},
		"every annotation a lock writes goes, and only those": {
			sts: stsWith(ptr.To[int32](1), map[string]string{
				AnnotationHolder: "Switchover/s1", AnnotationHolderUID: "uid-b1", AnnotationAccount: "acc", AnnotationNode: "cloud-config/c/n",
				"meta.helm.sh/release-name": "chain",
			}),
			want: ops(holderIs("Switchover/s1"), replicasAre(1), remove(AnnotationHolder, AnnotationHolderUID, AnnotationAccount, AnnotationNode)),
		},
		"unreadable recorded replicas: starts one": {
			sts:  stsWith(ptr.To[int32](0), stopped("three")),
			want: ops(holderUID, replicasAre(0), remove(stoppedKeys...), scaleTo(1)),
		},
		"negative recorded replicas: starts one": {
			sts:  stsWith(ptr.To[int32](0), stopped("-2")),
			want: ops(holderUID, replicasAre(0), remove(stoppedKeys...), scaleTo(1)),
		},
		"not locked at all: tests the replicas, changes nothing": {
			sts:  stsWith(ptr.To[int32](1), nil),
			want: ops(sameObject, replicasAre(1)),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := ReleasePatch(StatefulSetWorkload(tc.sts))
			if p.Type != types.JSONPatchType {
				t.Errorf("ReleasePatch type = %s, want a JSON patch", p.Type)
			}
			var got []any
			if err := json.Unmarshal(p.Data, &got); err != nil {
				t.Fatalf("patch %s is not a JSON list: %v", p.Data, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ReleasePatch (-want +got):\n%s", diff)
			}
		})
	}
}

// apiserverJSONPatch makes the clientset apply JSON patches as the
// kube-apiserver does (the same library, a failed test answered 422 with its
// message) and move the resourceVersion on every write, so that a test of
// what the patch sees can fail.
func apiserverJSONPatch(c *fake.Clientset) {
	c.PrependReactor("patch", "*", func(a core.Action) (bool, runtime.Object, error) {
		pa := a.(core.PatchAction)
		if pa.GetPatchType() != types.JSONPatchType {
			return false, nil, nil
		}
		tracker := c.Tracker()
		stored, err := tracker.Get(a.GetResource(), a.GetNamespace(), pa.GetName())
		if err != nil {
			return true, nil, err
		}
		patch, err := jsonpatch.DecodePatch(pa.GetPatch())
		if err != nil {
			return true, nil, apierrors.NewBadRequest(err.Error())
		}
		old, _ := json.Marshal(stored)
		modified, err := patch.Apply(old)
		if err != nil {
			return true, nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		obj := reflect.New(reflect.TypeOf(stored).Elem()).Interface().(runtime.Object)
		if err := json.Unmarshal(modified, obj); err != nil {
			return true, nil, err
		}
		m, _ := meta.Accessor(obj)
		m.SetResourceVersion(m.GetResourceVersion() + "1")
		return true, obj, tracker.Update(a.GetResource(), obj, a.GetNamespace())
	})
}

// TestReleaseAfterAChangeSinceTheCache: a release built from a cache that
// is behind the workload goes through when only what it does not depend on
// moved (the controller's status write, a foreign annotation), and is
// refused as a conflict, nothing written, when the lock or the replicas
// moved.
func TestReleaseAfterAChangeSinceTheCache(t *testing.T) {
	ctx := context.Background()
	tests := map[string]struct {
		change       func(s *appsv1.StatefulSet)
		wantConflict bool
	}{
		"the StatefulSet controller wrote its status": {
			change: func(s *appsv1.StatefulSet) { s.Status.Replicas, s.Status.ObservedGeneration = 0, 5 },
		},
		"someone added an annotation of theirs": {
			change: func(s *appsv1.StatefulSet) { s.Annotations["example.com/note"] = "x" },
		},
		"someone scaled it up": {
			change:       func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr.To[int32](2) },
			wantConflict: true,
		},
		"the lock was taken over by a namesake": {
			change:       func(s *appsv1.StatefulSet) { s.Annotations[AnnotationHolderUID] = "uid-other" },
			wantConflict: true,
		},
		"the lock was removed": {
			change: func(s *appsv1.StatefulSet) {
				delete(s.Annotations, AnnotationHolder)
				delete(s.Annotations, AnnotationHolderUID)
			},
			wantConflict: true,
		},
		"the lock was taken over by a namesake with the same UID annotation": {
			change:       func(s *appsv1.StatefulSet) { s.Annotations[AnnotationHolder] = "Switchover/other" },
			wantConflict: true,
		},
		"the workload was replaced": {
			change:       func(s *appsv1.StatefulSet) { s.UID = "uid-new" },
			wantConflict: true,
		},
		"the recorded replicas were removed": {
			change:       func(s *appsv1.StatefulSet) { delete(s.Annotations, AnnotationReplicas) },
			wantConflict: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cached := stsWith(ptr.To[int32](0), map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1", AnnotationReplicas: "3", AnnotationMachine: "machine-a"})
			cached.ResourceVersion = "7"
			now := cached.DeepCopy()
			tc.change(now)
			now.ResourceVersion = "8"
			c := fake.NewClientset(now)
			apiserverJSONPatch(c)

			_, err := PatchWorkload(ctx, c, StatefulSetWorkload(cached), ns, ReleasePatch(StatefulSetWorkload(cached)))
			got, gerr := c.AppsV1().StatefulSets(ns).Get(ctx, cached.Name, metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tc.wantConflict {
				if !apierrors.IsConflict(err) {
					t.Fatalf("release = %v, want a conflict", err)
				}
				if diff := cmp.Diff(now, got); diff != "" {
					t.Errorf("a refused release changed the workload (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("release = %v, want it written", err)
			}
			if *got.Spec.Replicas != 3 {
				t.Errorf("replicas after release = %d, want the recorded 3", *got.Spec.Replicas)
			}
			if _, held := HolderOf(StatefulSetWorkload(got)); held {
				t.Error("still held after release")
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
			obj: nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape, nodetest.Replicas(3), nodetest.Annotations(foreign)),
			get: func(c *fake.Clientset) (*Workload, error) {
				s, err := c.AppsV1().StatefulSets(ns).Get(ctx, "node0", metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				return StatefulSetWorkload(s), nil
			},
		},
		"Deployment": {
			obj: nodetest.PythonDeployment("mychain", "node1", pyShape, nodetest.Replicas(3), nodetest.Annotations(foreign)),
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
	w := StatefulSetWorkload(nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape))
	w.Kind = "DaemonSet"
	_, err := PatchWorkload(ctx, c, w, ns, ReleasePatch(w))
	if err == nil || !strings.Contains(err.Error(), `unknown workload kind "DaemonSet"`) {
		t.Errorf("PatchWorkload(DaemonSet) = %v, want an unknown kind error", err)
	}
	if n := len(c.Actions()); n != 0 {
		t.Errorf("unknown kind sent %d requests, want none", n)
	}

	for name, w := range map[string]*Workload{
		"StatefulSet": StatefulSetWorkload(nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)),
		"Deployment":  DeploymentWorkload(nodetest.PythonDeployment("mychain", "node1", pyShape)),
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
	if err := json.Unmarshal(LockPatch(StatefulSetWorkload(stsWith(ptr.To[int32](1), nil)), LockRequest{Holder: backup1, Node: &n}).Data, &p); err != nil {
		t.Fatal(err)
	}
	sts := stsWith(ptr.To[int32](1), p.Metadata.Annotations)
	sts.Namespace = "ns"
	if got, ok := RecordedNode(StatefulSetWorkload(sts)); !ok || got != n {
		t.Errorf("round trip: %+v %v, want %+v", got, ok, n)
	}
}

// TestRefusedReleaseIsNotAlwaysAConflict: a release refused by validation
// or admission (the object and causes named, or a webhook's own 422) is that
// refusal, not a conflict to retry as if the cache were behind.
func TestRefusedReleaseIsNotAlwaysAConflict(t *testing.T) {
	sts := stsWith(ptr.To[int32](0), map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1", AnnotationReplicas: "3"})
	for name, refusal := range map[string]error{
		"validation": apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, sts.Name, field.ErrorList{
			field.Forbidden(field.NewPath("spec", "replicas"), "denied by policy scale-freeze"),
		}),
		"a webhook's bare 422": &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
			Message: `admission webhook "freeze.example.com" denied the request: scaling is frozen`,
		}},
	} {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientset(sts)
			c.PrependReactor("patch", "statefulsets", func(core.Action) (bool, runtime.Object, error) { return true, nil, refusal })
			w := StatefulSetWorkload(sts)
			_, err := PatchWorkload(context.Background(), c, w, ns, ReleasePatch(w))
			if apierrors.IsConflict(err) || !apierrors.IsInvalid(err) {
				t.Errorf("release refused = %v, want that refusal, not a conflict", err)
			}
		})
	}
}
