package operations

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Backup: copy the node's chain state, with a checksum manifest, into a PVC
// named after the Backup and owned by it. Direct copies from the live node
// and says so in status.
type backupWork struct {
	cr *citav1.Backup
}

func backupOperation(cr *citav1.Backup) *operation {
	return nodeOperation(cr, &cr.Status.OperationStatus, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions, backupWork{cr: cr})
}

func (w backupWork) validate(_ context.Context, c *Controller, op *operation, _ []*nodeops.Node) error {
	return c.validateDataPVC(op, w.cr.Spec.PVCSize)
}

func (backupWork) directNeedsStoppedNode() bool { return false }

func (w backupWork) prepare(ctx context.Context, c *Controller, op *operation, nodes []*nodeops.Node) (bool, error) {
	if op.action == citav1.ActionDirect {
		w.cr.Status.Live = true
	}
	return c.ensureDataPVC(ctx, op, nodes[0], w.cr.Spec.StorageClass, w.cr.Spec.PVCSize, &w.cr.Status.VolumeStatus)
}

func (w backupWork) jobArgs(*Controller, *operation, []*nodeops.Node) (jobargs.Args, string, bool, error) {
	return jobargs.Args{
		Op:         jobargs.OpBackup,
		NodeRoot:   jobargs.NodeRootMountPath,
		BackupPath: jobargs.BackupMountPath,
	}, w.cr.Name, false, nil
}

func (w backupWork) recordResult(_ *operation, r *jobargs.Result) {
	recordVolumeResult(&w.cr.Status.VolumeStatus, r)
}

func recordVolumeResult(vs *citav1.VolumeStatus, r *jobargs.Result) {
	vs.Actual = r.Bytes
	vs.Files = r.Files
	vs.Checksum = r.Checksum
	vs.Size = jobargs.HumanBytes(r.Bytes)
}

// validateDataPVC refuses, before anything is touched, a claim name taken
// by someone else's PVC (it would be written into) and a size that is not
// a quantity.
func (c *Controller) validateDataPVC(op *operation, size string) error {
	if size != "" {
		if _, err := resource.ParseQuantity(size); err != nil {
			return &nodeops.InvalidError{Reason: fmt.Sprintf("pvcSize %q is not a quantity: %v", size, err)}
		}
	}
	pvc, err := c.listers.PVCs.PersistentVolumeClaims(op.obj.GetNamespace()).Get(op.obj.GetName())
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if owner := metav1.GetControllerOf(pvc); owner == nil || owner.UID != op.obj.GetUID() {
		return &nodeops.InvalidError{Reason: fmt.Sprintf("PVC %s/%s already exists and does not belong to this %s", pvc.Namespace, pvc.Name, op.kind.name)}
	}
	return nil
}

// ensureDataPVC creates the claim a Backup or Snapshot writes to, with the
// node's storage class and size unless the spec overrides them, and records
// what was used.
func (c *Controller) ensureDataPVC(ctx context.Context, op *operation, node *nodeops.Node, storageClass, size string, vs *citav1.VolumeStatus) (bool, error) {
	if storageClass == "" {
		storageClass = node.StorageClass
	}
	quantity := node.Size
	if size != "" {
		quantity = resource.MustParse(size) // validated
	}
	if quantity.IsZero() {
		return false, &nodeops.InvalidError{Reason: fmt.Sprintf("the size of the node's data PVC %s is unknown: set spec.pvcSize", node.DataClaim)}
	}
	vs.PVC, vs.StorageClass, vs.Allocate = op.obj.GetName(), storageClass, quantity.Value()

	if _, err := c.listers.PVCs.PersistentVolumeClaims(op.obj.GetNamespace()).Get(op.obj.GetName()); err == nil {
		return true, nil
	} else if !apierrors.IsNotFound(err) {
		return false, err
	}
	pvc := nodeops.BackupPVC(nodeops.BackupPVCRequest{
		Name: op.obj.GetName(), Namespace: op.obj.GetNamespace(), Owner: op.ownerRef(),
		StorageClass: storageClass, Size: quantity, AccessModes: node.AccessModes,
	})
	_, err := c.kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Create(ctx, pvc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return false, nil // the cache is behind; the next sync checks its owner
	}
	if err != nil {
		return false, err
	}
	c.event(op, eventNormal, "PVCCreated", "created PVC %s (%s, storage class %q)", pvc.Name, quantity.String(), storageClass)
	return true, nil
}
