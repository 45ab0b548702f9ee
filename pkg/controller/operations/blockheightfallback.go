package operations

import (
	"context"

	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// BlockHeightFallback: cloud-op rolls the stopped node back to a height, in
// place (the job binary checkpoints the data around it).
type fallbackWork struct {
	spec *citav1.BlockHeightFallbackSpec
}

func fallbackOperation(cr *citav1.BlockHeightFallback) *operation {
	return nodeOperation(cr, &cr.Status, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions, fallbackWork{spec: &cr.Spec})
}

func (fallbackWork) validate(context.Context, *Controller, *operation, []*nodeops.Node) error {
	return nil
}

func (fallbackWork) directNeedsStoppedNode() bool { return true }

func (fallbackWork) prepare(context.Context, *Controller, *operation, []*nodeops.Node) (bool, error) {
	return true, nil
}

func (w fallbackWork) jobArgs(_ *Controller, _ *operation, nodes []*nodeops.Node) (jobargs.Args, string, bool, error) {
	n := nodes[0]
	return jobargs.Args{
		Op:                  jobargs.OpFallback,
		NodeRoot:            jobargs.NodeRootMountPath,
		ConfigPath:          n.ConfigPath(),
		BlockHeight:         w.spec.BlockHeight,
		Crypto:              n.Crypto,
		Consensus:           n.Consensus,
		DeleteConsensusData: ptr.Deref(w.spec.DeleteConsensusData, false),
	}, "", false, nil
}

func (fallbackWork) recordResult(*operation, *jobargs.Result) {}

func target(namespace string, t citav1.NodeTarget) nodeops.Target {
	return nodeops.Target{Namespace: namespace, Chain: t.Chain, Name: t.Node, Method: t.DeployMethod}
}

func (fallbackWork) writesNodeRoot() {}
