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

// The PVC a Backup or Snapshot writes to: named after the CR, owned by it,
// with the node's storage class and size unless the spec says otherwise.

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
	_, err := c.deps.Kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Create(ctx, pvc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return false, nil // the cache is behind; the next sync checks its owner
	}
	if err != nil {
		return false, err
	}
	c.event(op, eventNormal, "PVCCreated", "created PVC %s (%s, storage class %q)", pvc.Name, quantity.String(), storageClass)
	return true, nil
}
