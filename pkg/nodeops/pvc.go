package nodeops

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupPVCRequest says what claim a Backup or Snapshot writes to.
type BackupPVCRequest struct {
	Name         string
	Namespace    string
	Owner        metav1.OwnerReference
	StorageClass string
	Size         resource.Quantity
	// AccessMode of the node's data claim: the Job mounts both, so the
	// backup claim must be attachable where the data claim is.
	AccessModes []corev1.PersistentVolumeAccessMode
}

// BackupPVC is the claim a Backup or Snapshot writes its data to, named
// after the CR and owned by it: deleting the CR deletes its data.
func BackupPVC(r BackupPVCRequest) *corev1.PersistentVolumeClaim {
	modes := r.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:            r.Name,
			Namespace:       r.Namespace,
			Labels:          map[string]string{LabelOperationUID: string(r.Owner.UID)},
			OwnerReferences: []metav1.OwnerReference{r.Owner},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: modes,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: r.Size},
			},
		},
	}
	if r.StorageClass != "" {
		pvc.Spec.StorageClassName = &r.StorageClass
	}
	return pvc
}
