package nodeops

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// LabelOperationUID marks a Job and its pods with the UID of the operation
// that created them, so pod events find their operation without the Job.
const LabelOperationUID = "citacloud.rivtower.com/operation-uid"

// Volume names inside the Job's pod.
const (
	jobNodeVolume   = "node"
	jobBackupVolume = "backup"
	jobConfigVolume = "config"
)

// JobRequest is everything the operation's Job is built from.
type JobRequest struct {
	Name      string
	Namespace string
	Owner     metav1.OwnerReference
	Image     string
	Pull      corev1.PullPolicy
	Args      jobargs.Args
	Node      *Node
	// BackupClaim is the Backup or Snapshot PVC mounted at
	// jobargs.BackupMountPath; ReadOnly when it is only read.
	BackupClaim    string
	BackupReadOnly bool
	// Machine, when set, pins the pod to that Kubernetes node.
	Machine string
	// ActiveDeadlineSeconds bounds the whole run.
	ActiveDeadlineSeconds int64
}

// Job builds the operation's Job: one pod, never retried, no API token, its
// result in the termination message. No TTL: it is set only once the result
// is recorded, so an operator that was down longer than the TTL still finds
// it.
func Job(r JobRequest) *batchv1.Job {
	labels := map[string]string{LabelOperationUID: string(r.Owner.UID)}
	volumes := []corev1.Volume{{
		Name: jobNodeVolume,
		VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
			ClaimName: r.Node.DataClaim,
		}},
	}}
	mounts := []corev1.VolumeMount{{Name: jobNodeVolume, MountPath: jobargs.NodeRootMountPath, SubPath: r.Node.DataSubPath}}
	if r.BackupClaim != "" {
		volumes = append(volumes, corev1.Volume{
			Name: jobBackupVolume,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: r.BackupClaim, ReadOnly: r.BackupReadOnly,
			}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: jobBackupVolume, MountPath: jobargs.BackupMountPath, ReadOnly: r.BackupReadOnly})
	}
	if r.Args.Op.UsesCloudOp() && r.Node.ConfigMap != "" {
		volumes = append(volumes, corev1.Volume{
			Name: jobConfigVolume,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: r.Node.ConfigMap},
			}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: jobConfigVolume, MountPath: jobargs.ConfigMountPath, ReadOnly: true})
	}

	pod := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To[int64](30),
		Volumes:                       volumes,
		Containers: []corev1.Container{{
			Name:                     "job",
			Image:                    r.Image,
			ImagePullPolicy:          r.Pull,
			Command:                  r.Args.Command(),
			VolumeMounts:             mounts,
			TerminationMessagePath:   jobargs.DefaultTerminationLog,
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			// Root, to keep every file's owner and to chown; only the
			// capabilities that file work needs.
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:                ptr.To[int64](0),
				RunAsNonRoot:             ptr.To(false),
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities: &corev1.Capabilities{
					Drop: []corev1.Capability{"ALL"},
					Add:  []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID"},
				},
			},
		}},
	}
	if r.Machine != "" {
		pod.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchFields: []corev1.NodeSelectorRequirement{{
						Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{r.Machine},
					}},
				}},
			},
		}}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            r.Name,
			Namespace:       r.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{r.Owner},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: ptr.To(r.ActiveDeadlineSeconds),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)},
				Spec:       pod,
			},
		},
	}
}

// maxJobName keeps the Job name a valid label value: the Job controller
// copies it into its pods' job-name label (63 characters at most).
const maxJobName = 63

// JobName is the operation's Job name: the CR's name and a suffix for its
// kind, or, when that is too long, a shortened name with a hash of the full
// one so that it stays unique and the same on every call.
func JobName(crName, suffix string) string {
	full := crName + "-" + suffix
	if len(full) <= maxJobName {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	hash := hex.EncodeToString(sum[:])[:8]
	keep := max(maxJobName-len(suffix)-len(hash)-2, 0)
	prefix := crName[:min(keep, len(crName))]
	for len(prefix) > 0 && (prefix[len(prefix)-1] == '-' || prefix[len(prefix)-1] == '.') {
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + "-" + hash + "-" + suffix
}
