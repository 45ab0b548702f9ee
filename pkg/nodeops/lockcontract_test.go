package nodeops

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

// TestCheckWritable: another writer of a node's workload is refused, with
// the holder named, exactly while an operation holds it — the same
// workloads the operations themselves see as held.
func TestCheckWritable(t *testing.T) {
	deployment := func(annotations map[string]string) metav1.Object {
		return nodetest.PythonDeployment("mychain", "node1", pyShape, nodetest.Annotations(annotations))
	}
	sts := func(annotations map[string]string) metav1.Object { return stsWith(ptr.To[int32](0), annotations) }
	tests := map[string]struct {
		obj  metav1.Object
		want *HeldError // nil: writable
	}{
		"free StatefulSet": {obj: sts(map[string]string{"example.com/note": "x"})},
		"free Deployment":  {obj: deployment(nil)},
		"held StatefulSet": {
			obj:  sts(map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1", AnnotationReplicas: "3"}),
			want: &HeldError{Workload: "StatefulSet chains/node0", Holder: backup1},
		},
		"held Deployment, not stopped (a Direct operation)": {
			obj:  deployment(map[string]string{AnnotationHolder: "ChangeOwner/c1", AnnotationHolderUID: "uid-c1"}),
			want: &HeldError{Workload: "Deployment chains/node1", Holder: Holder{Kind: "ChangeOwner", Name: "c1", UID: "uid-c1"}},
		},
		"held by a namesake with another UID: still held": {
			obj:  sts(map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-old"}),
			want: &HeldError{Workload: "StatefulSet chains/node0", Holder: Holder{Kind: "Backup", Name: "b1", UID: "uid-old"}},
		},
		"held without a UID: still held": {
			obj:  sts(map[string]string{AnnotationHolder: "Backup/b1"}),
			want: &HeldError{Workload: "StatefulSet chains/node0", Holder: Holder{Kind: "Backup", Name: "b1"}},
		},
		"an object of another type, held": {
			obj:  &metav1.ObjectMeta{Namespace: "chains", Name: "x", Annotations: map[string]string{AnnotationHolder: "Backup/b1", AnnotationHolderUID: "uid-b1"}},
			want: &HeldError{Workload: "workload chains/x", Holder: backup1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := CheckWritable(tc.obj)
			h, held := Held(tc.obj)
			if opsHolder, opsHeld := HolderOf(&Workload{Object: tc.obj}); opsHeld != held || opsHolder != h {
				t.Errorf("Held = %v, %v but the operations see HolderOf = %v, %v: writers and operations must agree", h, held, opsHolder, opsHeld)
			}
			if tc.want == nil {
				if err != nil || held {
					t.Errorf("CheckWritable = %v, Held = %v: want a free workload writable", err, held)
				}
				return
			}
			var refused *HeldError
			if !errors.As(err, &refused) {
				t.Fatalf("CheckWritable = %v, want a *HeldError", err)
			}
			if diff := cmp.Diff(tc.want, refused); diff != "" {
				t.Errorf("refusal (-want +got):\n%s", diff)
			}
			if !held || h != tc.want.Holder {
				t.Errorf("Held = %v, %v, want %v, true", h, held, tc.want.Holder)
			}
			for _, s := range []string{tc.want.Workload, tc.want.Holder.String(), string(tc.want.Holder.UID)} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("refusal %q does not name %q", err, s)
				}
			}
		})
	}
}

// TestCheckWritableAcrossLockAndRelease: what LockPatch writes refuses
// other writers, and what ReleasePatch leaves lets them write again, for
// both kinds of workload.
func TestCheckWritableAcrossLockAndRelease(t *testing.T) {
	ctx := context.Background()
	node := Target{Namespace: ns, Chain: "mychain", Name: "node0", Method: citav1.DeployMethodCloudConfig}
	for name, tc := range map[string]struct {
		obj  metav1.Object
		read func(c *fake.Clientset) (metav1.Object, *Workload)
	}{
		"StatefulSet": {
			obj: stsWith(ptr.To[int32](2), nil),
			read: func(c *fake.Clientset) (metav1.Object, *Workload) {
				s, err := c.AppsV1().StatefulSets(ns).Get(ctx, "node0", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return s, StatefulSetWorkload(s)
			},
		},
		"Deployment": {
			obj: nodetest.PythonDeployment("mychain", "node1", pyShape),
			read: func(c *fake.Clientset) (metav1.Object, *Workload) {
				d, err := c.AppsV1().Deployments(ns).Get(ctx, "node1", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return d, DeploymentWorkload(d)
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			var c *fake.Clientset
			switch o := tc.obj.(type) {
			case *appsv1.StatefulSet:
				c = fake.NewClientset(o)
			case *appsv1.Deployment:
				c = fake.NewClientset(o)
			}
			obj, w := tc.read(c)
			if err := CheckWritable(obj); err != nil {
				t.Fatalf("before the lock: %v", err)
			}
			if _, err := PatchWorkload(ctx, c, w, ns, LockPatch(w, LockRequest{Holder: backup1, Stop: true, Machine: "m", Account: "acc", Node: &node})); err != nil {
				t.Fatal(err)
			}
			obj, w = tc.read(c)
			var refused *HeldError
			if err := CheckWritable(obj); !errors.As(err, &refused) || refused.Holder != backup1 {
				t.Errorf("while held: CheckWritable = %v, want a refusal naming %v", err, backup1)
			}
			for k := range obj.GetAnnotations() {
				if !IsLockAnnotation(k) {
					t.Errorf("the lock wrote %s, which IsLockAnnotation does not know: other writers would not leave it alone", k)
				}
			}
			if _, err := PatchWorkload(ctx, c, w, ns, ReleasePatch(w)); err != nil {
				t.Fatal(err)
			}
			obj, _ = tc.read(c)
			if err := CheckWritable(obj); err != nil {
				t.Errorf("after the release: CheckWritable = %v, want writable", err)
			}
		})
	}
}

func TestIsLockAnnotation(t *testing.T) {
	for key, want := range map[string]bool{
		AnnotationHolder:                    true,
		AnnotationHolderUID:                 true,
		AnnotationReplicas:                  true,
		AnnotationMachine:                   true,
		AnnotationAccount:                   true,
		AnnotationNode:                      true,
		"citacloud.rivtower.com/other":      false,
		"deployment.kubernetes.io/revision": false,
		"":                                  false,
	} {
		if got := IsLockAnnotation(key); got != want {
			t.Errorf("IsLockAnnotation(%q) = %v, want %v", key, got, want)
		}
	}
}
