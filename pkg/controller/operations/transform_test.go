package operations

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/cita-cloud/cita-node-operator/pkg/controller"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// TestTrimmedCacheLocatesTheSameNodes: nodes located from the trimmed cache
// are the nodes located from the full objects, for every deploy method, so
// the transform drops nothing nodeops reads.
func TestTrimmedCacheLocatesTheSameNodes(t *testing.T) {
	for _, d := range deployments() {
		t.Run(string(d.method), func(t *testing.T) {
			for _, o := range d.objects {
				// The workload's controller has not yet acted on its
				// latest spec: the trimmed cache must still tell.
				switch w := o.(type) {
				case *appsv1.StatefulSet:
					w.Generation, w.Status.ObservedGeneration = 3, 2
				case *appsv1.Deployment:
					w.Generation, w.Status.ObservedGeneration = 3, 2
				}
			}
			full := newFixture(t, d.objects...)
			var trimmed []runtime.Object
			for _, o := range d.objects {
				c := o.DeepCopyObject()
				out, err := controller.TrimForCache(c)
				if err != nil {
					t.Fatal(err)
				}
				trimmed = append(trimmed, out.(runtime.Object))
			}
			lean := newFixture(t, trimmed...)
			target := nodeops.Target{Namespace: ns, Chain: d.chain, Name: d.node, Method: d.method}
			want, err := nodeops.Locate(full.c.listers, target)
			if err != nil {
				t.Fatal(err)
			}
			got, err := nodeops.Locate(lean.c.listers, target)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(nodeView(want), nodeView(got)); diff != "" {
				t.Fatalf("located differently from the trimmed cache (-full +trimmed):\n%s", diff)
			}
			wantM, _ := want.Machine(full.c.listers.Pods)
			gotM, _ := got.Machine(lean.c.listers.Pods)
			if wantM != gotM || gotM == "" {
				t.Fatalf("machine %q vs %q", wantM, gotM)
			}
		})
	}
}

// nodeView is what an operation uses of a located node.
func nodeView(n *nodeops.Node) map[string]any {
	return map[string]any{
		"workload": n.Workload.Key(), "replicas": n.Workload.Replicas, "selector": n.Workload.Selector.String(),
		"claim": n.DataClaim, "subPath": n.DataSubPath, "storageClass": n.StorageClass, "size": n.Size.String(),
		"accessModes": n.AccessModes, "configMap": n.ConfigMap, "account": n.AccountConfigMap,
		"crypto": n.Crypto, "consensus": n.Consensus, "configPath": n.ConfigPath(),
		"observed": n.Workload.Observed, "controllerSawSpec": n.Workload.ControllerSawSpec(),
	}
}
