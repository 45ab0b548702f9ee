package operations

import (
	"context"

	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// ChangeOwner: chown -R of the node root. Direct runs it on the live node.
type changeOwnerWork struct{ spec *citav1.ChangeOwnerSpec }

func changeOwnerOperation(cr *citav1.ChangeOwner) *operation {
	return nodeOperation(cr, &cr.Status, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions, changeOwnerWork{spec: &cr.Spec})
}

func (changeOwnerWork) validate(context.Context, *Controller, *operation, []*nodeops.Node) error {
	return nil
}

func (changeOwnerWork) directNeedsStoppedNode() bool { return false }

func (changeOwnerWork) prepare(context.Context, *Controller, *operation, []*nodeops.Node) (bool, error) {
	return true, nil
}

func (w changeOwnerWork) jobArgs(*Controller, *operation, []*nodeops.Node) (jobargs.Args, string, bool, error) {
	return jobargs.Args{
		Op:       jobargs.OpChown,
		NodeRoot: jobargs.NodeRootMountPath,
		UID:      ptr.Deref(w.spec.UID, 1000),
		GID:      ptr.Deref(w.spec.GID, 1000),
	}, "", false, nil
}

func (changeOwnerWork) recordResult(*operation, *jobargs.Result) {}
