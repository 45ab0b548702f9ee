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

// Backup: copy the node's chain state, with a checksum manifest, into a PVC
// named after the Backup and owned by it. Direct copies from the live node
// and says so in status.
func init() {
	register(kindSpec[*citav1.Backup]{
		Name: "Backup", Resource: "backups", JobSuffix: "backup",
		Informer: func(i citainformers.Interface) cache.SharedIndexInformer { return i.Backups().Informer() },
		Client: func(c citaclient.CitacloudV1Interface, ns string) crClient[*citav1.Backup] {
			return c.Backups(ns)
		},
		Operation: func(cr *citav1.Backup) *operation {
			return nodeOperation(cr, &cr.Status.OperationStatus, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions)
		},
		hooks: hooks[*citav1.Backup]{
			Validate: func(_ context.Context, c *Controller, op *operation, cr *citav1.Backup, _ []*nodeops.Node) error {
				return c.validateDataPVC(op, cr.Spec.PVCSize)
			},
			Prepare: func(ctx context.Context, c *Controller, op *operation, cr *citav1.Backup, nodes []*nodeops.Node) (bool, error) {
				if op.action == citav1.ActionDirect {
					cr.Status.Live = true
				}
				return c.ensureDataPVC(ctx, op, nodes[0], cr.Spec.StorageClass, cr.Spec.PVCSize, &cr.Status.VolumeStatus)
			},
			Job: func(_ *Controller, cr *citav1.Backup, _ []*nodeops.Node) (jobWork, error) {
				return jobWork{Args: jobargs.Args{
					Op:         jobargs.OpBackup,
					NodeRoot:   jobargs.NodeRootMountPath,
					BackupPath: jobargs.BackupMountPath,
				}, Claim: cr.Name}, nil
			},
			RecordResult: func(cr *citav1.Backup, r *jobargs.Result) { recordVolumeResult(&cr.Status.VolumeStatus, r) },
		},
	})
}
