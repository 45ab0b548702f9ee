package operations

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	citaclient "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/typed/citacloud/v1"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// Switchover: stop both cloud-config nodes, swap the ConfigMaps of their
// node-account volumes, start both. No Job: the controller patches the two
// StatefulSets itself. The accounts each node had are recorded on its
// StatefulSet when it is locked, and the swap is computed from those records,
// so running it again after a crash changes nothing.
func init() {
	register(kindSpec[*citav1.Switchover]{
		Name: "Switchover", Resource: "switchovers", JobSuffix: "switchover",
		Informer: func(i citainformers.Interface) cache.SharedIndexInformer { return i.Switchovers().Informer() },
		Client: func(c citaclient.CitacloudV1Interface, ns string) crClient[*citav1.Switchover] {
			return c.Switchovers(ns)
		},
		Operation: func(cr *citav1.Switchover) *operation {
			t := func(node string) nodeops.Target {
				return nodeops.Target{Namespace: cr.Namespace, Chain: cr.Spec.Chain, Name: node, Method: citav1.DeployMethodCloudConfig}
			}
			return &operation{
				obj: cr, status: &cr.Status,
				targets: []nodeops.Target{t(cr.Spec.SourceNode), t(cr.Spec.DestNode)},
				action:  citav1.ActionStopAndStart,
				job:     cr.Spec.JobOptions,
			}
		},
		hooks: hooks[*citav1.Switchover]{
			Validate:        validateSwitchover,
			RecordsAccounts: true,
			Run:             swapAccounts,
			BeforeStart:     revertAccounts,
		},
	})
}

func validateSwitchover(_ context.Context, _ *Controller, _ *operation, _ *citav1.Switchover, nodes []*nodeops.Node) error {
	for _, n := range nodes {
		if n.AccountConfigMap == "" {
			return &nodeops.InvalidError{Reason: fmt.Sprintf("node %s has no %q ConfigMap volume: Switchover needs cloud-config StatefulSets", n.Name, nodeops.AccountVolume)}
		}
	}
	if nodes[0].AccountConfigMap == nodes[1].AccountConfigMap {
		return &nodeops.InvalidError{Reason: fmt.Sprintf("nodes %s and %s already use the same account ConfigMap %s", nodes[0].Name, nodes[1].Name, nodes[0].AccountConfigMap)}
	}
	return nil
}

// revertAccounts puts each node's own recorded account back after a failed
// Switchover, so that a swap interrupted half-way (one StatefulSet patched)
// never starts two nodes with the same account. After success there is
// nothing to revert.
func revertAccounts(ctx context.Context, c *Controller, op *operation, _ *citav1.Switchover, held []*nodeops.Workload) (bool, error) {
	if meta.IsStatusConditionTrue(op.status.Conditions, citav1.ConditionSucceeded) {
		return false, nil
	}
	changed := false
	for _, w := range held {
		own := nodeops.RecordedAccount(w)
		if own == "" || accountOf(w) == own {
			continue
		}
		if err := c.setAccount(ctx, op.obj.GetNamespace(), w.Name, own); err != nil {
			return false, err
		}
		c.event(op, eventWarning, "AccountRestored", "%s given back its own account ConfigMap %s: the Switchover failed after swapping it", w.Key(), own)
		changed = true
	}
	return changed, nil
}

// accountOf is the ConfigMap of the workload's node-account volume.
func accountOf(w *nodeops.Workload) string {
	for _, v := range w.Template.Spec.Volumes {
		if v.Name == nodeops.AccountVolume && v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}

// setAccount points the StatefulSet's node-account volume at configMap.
func (c *Controller) setAccount(ctx context.Context, namespace, sts, configMap string) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
		"volumes": []any{map[string]any{"name": nodeops.AccountVolume, "configMap": map[string]any{"name": configMap}}},
	}}}})
	if err != nil {
		return err
	}
	out, err := c.deps.Kube.AppsV1().StatefulSets(namespace).Patch(ctx, sts, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err == nil {
		c.written.record(out.UID, out.ResourceVersion)
	}
	return err
}

// swapAccounts gives each node the account recorded on the other.
func swapAccounts(ctx context.Context, c *Controller, op *operation, _ *citav1.Switchover, nodes []*nodeops.Node) (bool, error) {
	done := true
	for i, n := range nodes {
		other := nodes[1-i]
		want := nodeops.RecordedAccount(other.Workload)
		if want == "" {
			return false, fmt.Errorf("StatefulSet %s carries no recorded account", other.Workload.Name)
		}
		if n.AccountConfigMap == want {
			continue
		}
		done = false
		if err := c.setAccount(ctx, n.Namespace, n.Workload.Name, want); err != nil {
			return false, err
		}
		c.event(op, eventNormal, "AccountSwapped", "node %s now uses account ConfigMap %s (was %s)", n.Name, want, n.AccountConfigMap)
	}
	return done, nil
}
