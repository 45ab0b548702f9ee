package nodeops

import (
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// statefulSetWorkload reads a StatefulSet from the cache. It refuses one
// whose PVC retention policy deletes claims on scale-down: stopping the
// node would delete its data.
func statefulSetWorkload(l Listers, namespace, name, role string) (*Workload, error) {
	sts, err := l.StatefulSets.StatefulSets(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		if _, derr := l.Deployments.Deployments(namespace).Get(name); derr == nil {
			return nil, invalid("%s %s/%s is a Deployment, not a StatefulSet: check deployMethod", role, namespace, name)
		}
		return nil, invalid("%s StatefulSet %s/%s does not exist", role, namespace, name)
	}
	if err != nil {
		return nil, err
	}
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && p.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		return nil, invalid("StatefulSet %s/%s has persistentVolumeClaimRetentionPolicy.whenScaled: Delete: scaling it to 0 would delete the node's data", namespace, name)
	}
	w := StatefulSetWorkload(sts)
	if w.Selector == nil {
		return nil, invalid("StatefulSet %s/%s has an invalid selector", namespace, name)
	}
	return w, nil
}

// StatefulSetWorkload wraps a cached StatefulSet. Selector is nil when the
// StatefulSet's selector is invalid.
func StatefulSetWorkload(sts *appsv1.StatefulSet) *Workload {
	selector, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		selector = nil
	}
	return &Workload{
		Kind:           "StatefulSet",
		Name:           sts.Name,
		Object:         sts,
		Replicas:       replicasOf(sts.Spec.Replicas),
		Selector:       selector,
		Template:       &sts.Spec.Template,
		ClaimTemplates: sts.Spec.VolumeClaimTemplates,
		Observed:       sts.Status.ObservedGeneration,
	}
}

// DeploymentWorkload wraps a cached Deployment. Selector is nil when the
// Deployment's selector is invalid.
func DeploymentWorkload(d *appsv1.Deployment) *Workload {
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		selector = nil
	}
	return &Workload{Kind: "Deployment", Name: d.Name, Object: d, Replicas: replicasOf(d.Spec.Replicas), Selector: selector, Template: &d.Spec.Template, Observed: d.Status.ObservedGeneration}
}

// replicasOf applies the apiserver's default of one replica.
func replicasOf(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}
