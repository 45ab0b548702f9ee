package operations

import (
	"context"

	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	citaclient "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/typed/citacloud/v1"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Snapshot: cloud-op writes the state at a height into a PVC named after the
// Snapshot and owned by it, as <claim>/<height>: {chain_data,data} with the
// current cloud-op, the executor's state database itself with the legacy
// one (see datamove.Snapshot).
func init() {
	register(kindSpec[*citav1.Snapshot]{
		Name: "Snapshot", Resource: "snapshots", JobSuffix: "snapshot",
		Informer: func(i citainformers.Interface) cache.SharedIndexInformer { return i.Snapshots().Informer() },
		Client: func(c citaclient.CitacloudV1Interface, ns string) crClient[*citav1.Snapshot] {
			return c.Snapshots(ns)
		},
		Operation: func(cr *citav1.Snapshot) *operation {
			return nodeOperation(cr, &cr.Status.OperationStatus, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions)
		},
		hooks: hooks[*citav1.Snapshot]{
			DirectNeedsStoppedNode: true,
			Validate: func(_ context.Context, c *Controller, op *operation, cr *citav1.Snapshot, _ []*nodeops.Node) error {
				return c.validateDataPVC(op, cr.Spec.PVCSize)
			},
			Prepare: func(ctx context.Context, c *Controller, op *operation, cr *citav1.Snapshot, nodes []*nodeops.Node) (bool, error) {
				return c.ensureDataPVC(ctx, op, nodes[0], cr.Spec.StorageClass, cr.Spec.PVCSize, &cr.Status.VolumeStatus)
			},
			Job: func(_ *Controller, cr *citav1.Snapshot, nodes []*nodeops.Node) (jobWork, error) {
				n := nodes[0]
				return jobWork{Args: jobargs.Args{
					Op:          jobargs.OpSnapshot,
					NodeRoot:    jobargs.NodeRootMountPath,
					ConfigPath:  n.ConfigPath(),
					BackupPath:  jobargs.BackupMountPath,
					BlockHeight: cr.Spec.BlockHeight,
					Crypto:      n.Crypto,
					Consensus:   n.Consensus,
				}, Claim: cr.Name}, nil
			},
			RecordResult: func(cr *citav1.Snapshot, r *jobargs.Result) {
				recordVolumeResult(&cr.Status.VolumeStatus, r)
				cr.Status.BlockHeight = cr.Spec.BlockHeight
				if r.BlockHeight != 0 {
					cr.Status.BlockHeight = r.BlockHeight
				}
				cr.Status.HeightBefore = r.HeightBefore
			},
		},
	})
}
