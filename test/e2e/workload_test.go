package e2e

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// TestReleaseOnTheRealAPIServer: what the operator's start of a node relies
// on, asked of the real kube-apiserver and controllers. A release built from
// a copy read before the workload's controller wrote its status goes
// through; one built before someone scaled the workload is refused as a
// conflict and writes nothing.
func TestReleaseOnTheRealAPIServer(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-release")
	// A kind the operator has no queue for: it leaves this lock alone
	// (one naming a missing BlockHeightFallback it would release as an
	// orphan's).
	holder := nodeops.Holder{Kind: "ReleaseTest", Name: "by-hand", UID: "uid-by-hand"}
	for _, n := range []*node{
		deployCloudConfig(t, ns, "rel", "rel-node0"),
		deployPython(t, ns, "rel", "rel-py0"),
	} {
		t.Run(n.Kind, func(t *testing.T) {
			// stop locks and stops the workload; the patch's answer is the
			// copy later patches are built from, as a cache would hold it.
			stop := func() *nodeops.Workload {
				t.Helper()
				var w *nodeops.Workload
				// The lock is guarded by the resourceVersion: a status
				// write of the workload's controller since the read
				// refuses it, and it is taken again from a new read, as
				// the operator does.
				err := retry.RetryOnConflict(retry.DefaultRetry, func() (err error) {
					w, err = n.send(nodeops.LockPatch(n.read(t), nodeops.LockRequest{Holder: holder, Stop: true, Machine: "m"}))
					return err
				})
				if err != nil {
					t.Fatalf("lock: %v", err)
				}
				return w
			}

			cached := stop()
			// The workload's controller sees the stop and writes its status.
			if err := wait.PollUntilContextTimeout(env.ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				return n.read(t).Object.GetResourceVersion() != cached.Object.GetResourceVersion(), nil
			}); err != nil {
				t.Fatalf("the workload's controller never wrote after the stop: %v", err)
			}
			if _, err := nodeops.PatchWorkload(env.ctx, env.kube, cached, ns, nodeops.ReleasePatch(cached)); err != nil {
				t.Fatalf("release after a status write: %v\npatch %s", err, nodeops.ReleasePatch(cached).Data)
			}
			if r := n.specReplicas(t); r != n.replicas {
				t.Fatalf("replicas after the release: %d, want %d", r, n.replicas)
			}
			if _, held := nodeops.HolderOf(n.read(t)); held {
				t.Fatal("still locked after the release")
			}

			cached = stop()
			if _, err := n.send(nodeops.Patch{Type: types.MergePatchType, Data: []byte(`{"spec":{"replicas":2}}`)}); err != nil {
				t.Fatalf("scaling by hand: %v", err)
			}
			_, err := nodeops.PatchWorkload(env.ctx, env.kube, cached, ns, nodeops.ReleasePatch(cached))
			if !apierrors.IsConflict(err) {
				t.Fatalf("release after someone scaled the workload = %v, want a conflict", err)
			}
			now := n.read(t)
			if now.Replicas != 2 || !nodeops.HeldBy(now, holder) {
				t.Fatalf("a refused release wrote: replicas %d, held %v", now.Replicas, nodeops.HeldBy(now, holder))
			}
			if _, err := nodeops.PatchWorkload(env.ctx, env.kube, now, ns, nodeops.ReleasePatch(now)); err != nil {
				t.Fatalf("release from a fresh read: %v", err)
			}
			if r := n.specReplicas(t); r != 2 {
				t.Fatalf("replicas after the fresh release: %d, want the 2 set by hand", r)
			}
		})
	}
}

// read gets the node's workload from the apiserver.
func (n *node) read(t *testing.T) *nodeops.Workload {
	t.Helper()
	if n.Kind == "Deployment" {
		d, err := env.kube.AppsV1().Deployments(n.ns).Get(env.ctx, n.workload, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return nodeops.DeploymentWorkload(d)
	}
	s, err := env.kube.AppsV1().StatefulSets(n.ns).Get(env.ctx, n.workload, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return nodeops.StatefulSetWorkload(s)
}

// send patches the node's workload and returns what the apiserver wrote.
func (n *node) send(p nodeops.Patch) (*nodeops.Workload, error) {
	if n.Kind == "Deployment" {
		d, err := env.kube.AppsV1().Deployments(n.ns).Patch(env.ctx, n.workload, p.Type, p.Data, metav1.PatchOptions{})
		if err != nil {
			return nil, err
		}
		return nodeops.DeploymentWorkload(d), nil
	}
	s, err := env.kube.AppsV1().StatefulSets(n.ns).Patch(env.ctx, n.workload, p.Type, p.Data, metav1.PatchOptions{})
	if err != nil {
		return nil, err
	}
	return nodeops.StatefulSetWorkload(s), nil
}
