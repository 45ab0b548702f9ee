package controller

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Switchover: stop both cloud-config nodes, swap the ConfigMaps of their
// node-account volumes, start both. No Job: the controller patches the two
// StatefulSets itself. The accounts each node had are recorded on its
// StatefulSet when it is locked, and the swap is computed from those records,
// so running it again after a crash changes nothing.
type switchoverWork struct {
	cr *citav1.Switchover
}

func switchoverOperation(cr *citav1.Switchover) *operation {
	t := func(node string) nodeops.Target {
		return nodeops.Target{Namespace: cr.Namespace, Chain: cr.Spec.Chain, Name: node, Method: citav1.DeployMethodCloudConfig}
	}
	return &operation{
		obj: cr, status: &cr.Status,
		targets: []nodeops.Target{t(cr.Spec.SourceNode), t(cr.Spec.DestNode)},
		action:  citav1.ActionStopAndStart,
		job:     cr.Spec.JobOptions,
		work:    switchoverWork{cr: cr},
	}
}

func (switchoverWork) validate(_ context.Context, _ *Controller, _ *operation, nodes []*nodeops.Node) error {
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

func (switchoverWork) directNeedsStoppedNode() bool { return false }

func (switchoverWork) prepare(context.Context, *Controller, *operation, []*nodeops.Node) (bool, error) {
	return true, nil
}

func (switchoverWork) jobArgs(*Controller, *operation, []*nodeops.Node) (jobargs.Args, string, bool, error) {
	return jobargs.Args{}, "", false, fmt.Errorf("switchover runs no Job")
}

func (switchoverWork) recordResult(*operation, *jobargs.Result) {}

func (switchoverWork) swapsAccounts() {}

// run gives each node the account recorded on the other.
func (switchoverWork) run(ctx context.Context, c *Controller, op *operation, nodes []*nodeops.Node) (bool, error) {
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
		patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"volumes": []any{map[string]any{"name": nodeops.AccountVolume, "configMap": map[string]any{"name": want}}},
		}}}})
		if err != nil {
			return false, err
		}
		if _, err := c.kube.AppsV1().StatefulSets(n.Namespace).Patch(ctx, n.Workload.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return false, err
		}
		c.event(op, eventNormal, "AccountSwapped", "node %s now uses account ConfigMap %s (was %s)", n.Name, want, n.AccountConfigMap)
	}
	return done, nil
}
