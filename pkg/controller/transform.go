package controller

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// lastApplied is kubectl's copy of the whole applied object: often the
// largest annotation, never read here.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// TrimForCache is the informers' transform. Every object loses its
// managedFields and kubectl's last-applied copy; pods, workloads, PVCs and
// Jobs keep only what the controller and nodeops read, since a namespace of
// blockchain nodes holds many large objects (the cached StatefulSets were
// half the operator's heap). Cached objects are only read and patched,
// never sent back whole, so nothing trimmed here can be written away.
func TrimForCache(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
		if a := o.GetAnnotations(); a[lastApplied] != "" {
			delete(a, lastApplied)
		}
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		o.Annotations = nil
		o.Spec = corev1.PodSpec{NodeName: o.Spec.NodeName}
		o.Status = corev1.PodStatus{
			Phase:                 o.Status.Phase,
			Conditions:            o.Status.Conditions,
			InitContainerStatuses: o.Status.InitContainerStatuses,
			ContainerStatuses:     o.Status.ContainerStatuses,
		}
	case *appsv1.StatefulSet:
		o.Spec = appsv1.StatefulSetSpec{
			Replicas:                             o.Spec.Replicas,
			Selector:                             o.Spec.Selector,
			Template:                             trimTemplate(o.Spec.Template),
			VolumeClaimTemplates:                 trimClaimTemplates(o.Spec.VolumeClaimTemplates),
			PersistentVolumeClaimRetentionPolicy: o.Spec.PersistentVolumeClaimRetentionPolicy,
		}
		// observedGeneration tells whether its controller has seen a stop.
		o.Status = appsv1.StatefulSetStatus{ObservedGeneration: o.Status.ObservedGeneration}
	case *appsv1.Deployment:
		o.Spec = appsv1.DeploymentSpec{Replicas: o.Spec.Replicas, Selector: o.Spec.Selector, Template: trimTemplate(o.Spec.Template)}
		o.Status = appsv1.DeploymentStatus{ObservedGeneration: o.Status.ObservedGeneration}
	case *corev1.PersistentVolumeClaim:
		o.Spec = corev1.PersistentVolumeClaimSpec{
			StorageClassName: o.Spec.StorageClassName,
			AccessModes:      o.Spec.AccessModes,
			Resources:        corev1.VolumeResourceRequirements{Requests: o.Spec.Resources.Requests},
		}
		o.Status = corev1.PersistentVolumeClaimStatus{Phase: o.Status.Phase, Capacity: o.Status.Capacity}
	case *batchv1.Job:
		o.Spec = batchv1.JobSpec{
			TTLSecondsAfterFinished: o.Spec.TTLSecondsAfterFinished,
			ActiveDeadlineSeconds:   o.Spec.ActiveDeadlineSeconds,
			Template:                corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: trimContainers(o.Spec.Template.Spec.Containers)}},
		}
		o.Status = batchv1.JobStatus{Conditions: o.Status.Conditions}
	}
	return obj, nil
}

// trimTemplate keeps what locates a node: volumes, the containers' images
// (crypto, consensus) and volume mounts (the data sub-path).
func trimTemplate(t corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: t.Labels},
		Spec: corev1.PodSpec{
			Volumes:        t.Spec.Volumes,
			InitContainers: trimContainers(t.Spec.InitContainers),
			Containers:     trimContainers(t.Spec.Containers),
		},
	}
}

func trimContainers(cs []corev1.Container) []corev1.Container {
	if cs == nil {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image, VolumeMounts: c.VolumeMounts}
	}
	return out
}

func trimClaimTemplates(ts []corev1.PersistentVolumeClaim) []corev1.PersistentVolumeClaim {
	if ts == nil {
		return nil
	}
	out := make([]corev1.PersistentVolumeClaim, len(ts))
	for i, t := range ts {
		out[i] = corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: t.Name}}
	}
	return out
}
