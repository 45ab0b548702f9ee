package operations

import (
	"context"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Snapshot: cloud-op writes the state at a height into a PVC named after the
// Snapshot and owned by it, as <claim>/<height>/{chain_data,data}.
type snapshotWork struct {
	cr *citav1.Snapshot
}

func snapshotOperation(cr *citav1.Snapshot) *operation {
	return nodeOperation(cr, &cr.Status.OperationStatus, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions, snapshotWork{cr: cr})
}

func (w snapshotWork) validate(_ context.Context, c *Controller, op *operation, _ []*nodeops.Node) error {
	return c.validateDataPVC(op, w.cr.Spec.PVCSize)
}

func (snapshotWork) directNeedsStoppedNode() bool { return true }

func (w snapshotWork) prepare(ctx context.Context, c *Controller, op *operation, nodes []*nodeops.Node) (bool, error) {
	return c.ensureDataPVC(ctx, op, nodes[0], w.cr.Spec.StorageClass, w.cr.Spec.PVCSize, &w.cr.Status.VolumeStatus)
}

func (w snapshotWork) jobArgs(_ *Controller, _ *operation, nodes []*nodeops.Node) (jobargs.Args, string, bool, error) {
	n := nodes[0]
	return jobargs.Args{
		Op:          jobargs.OpSnapshot,
		NodeRoot:    jobargs.NodeRootMountPath,
		ConfigPath:  n.ConfigPath(),
		BackupPath:  jobargs.BackupMountPath,
		BlockHeight: w.cr.Spec.BlockHeight,
		Crypto:      n.Crypto,
		Consensus:   n.Consensus,
	}, w.cr.Name, false, nil
}

func (w snapshotWork) recordResult(_ *operation, r *jobargs.Result) {
	recordVolumeResult(&w.cr.Status.VolumeStatus, r)
	w.cr.Status.BlockHeight = w.cr.Spec.BlockHeight
	if r.BlockHeight != 0 {
		w.cr.Status.BlockHeight = r.BlockHeight
	}
}
