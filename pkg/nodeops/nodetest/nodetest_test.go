package nodetest

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestNodesHoldTogether: in every node set the workload selects its own
// pods, which it controls, and its data volume names the claim the set
// holds — what the operator relies on to find a node's pods and data.
func TestNodesHoldTogether(t *testing.T) {
	for name, objs := range map[string][]runtime.Object{
		"cloud-config":            CloudConfigNode("c", "c-node0", Namespace("ns")),
		"cloud-config, PVC claim": CloudConfigNode("c", "c-node0", Namespace("ns"), Claim("shared")),
		"helm":                    HelmChain("h", 3, Namespace("ns")),
		"python":                  PythonNode("p", "p-node0", Namespace("ns")),
	} {
		t.Run(name, func(t *testing.T) {
			var (
				workload metav1.Object
				selector *metav1.LabelSelector
				template *corev1.PodTemplateSpec
				claim    string
				claims   = map[string]bool{}
				pods     []*corev1.Pod
			)
			for _, o := range objs {
				switch o := o.(type) {
				case *appsv1.StatefulSet:
					workload, selector, template = o, o.Spec.Selector, &o.Spec.Template
					for _, ct := range o.Spec.VolumeClaimTemplates {
						if ct.Name == DataVolume {
							claim = DataVolume + "-" + o.Name + "-0"
						}
					}
				case *appsv1.Deployment:
					workload, selector, template = o, o.Spec.Selector, &o.Spec.Template
				case *corev1.PersistentVolumeClaim:
					claims[o.Name] = true
					if o.Status.Phase != corev1.ClaimBound || o.Status.Capacity.Storage().Cmp(*o.Spec.Resources.Requests.Storage()) != 0 {
						t.Errorf("claim %s: %s with capacity %v, want bound at its request", o.Name, o.Status.Phase, o.Status.Capacity)
					}
				case *corev1.Pod:
					pods = append(pods, o)
				}
			}
			sel, err := metav1.LabelSelectorAsSelector(selector)
			if err != nil || !sel.Matches(labels.Set(template.Labels)) {
				t.Fatalf("selector %v (%v) does not select the template's labels %v", selector, err, template.Labels)
			}
			for _, v := range template.Spec.Volumes {
				if v.Name == DataVolume && v.PersistentVolumeClaim != nil {
					claim = v.PersistentVolumeClaim.ClaimName
				}
			}
			if claim == "" || !claims[claim] {
				t.Errorf("data claim %q, the set holds %v", claim, claims)
			}
			for _, c := range template.Spec.Containers {
				if len(c.VolumeMounts) == 0 || c.VolumeMounts[0].Name != DataVolume {
					t.Errorf("container %s: the data volume is not its first mount: %v", c.Name, c.VolumeMounts)
				}
			}
			if len(pods) == 0 {
				t.Fatal("no pods")
			}
			for _, p := range pods {
				if !sel.Matches(labels.Set(p.Labels)) || p.Namespace != workload.GetNamespace() {
					t.Errorf("pod %s/%s %v is not selected by its workload", p.Namespace, p.Name, p.Labels)
				}
				ref := metav1.GetControllerOf(p)
				if ref == nil || ref.Kind == "StatefulSet" && (ref.Name != workload.GetName() || ref.UID != workload.GetUID()) {
					t.Errorf("pod %s controlled by %+v, want its StatefulSet", p.Name, ref)
				}
			}
		})
	}
}

// TestOptions: the variations tests make reach the objects, and a stopped
// node has no pods.
func TestOptions(t *testing.T) {
	sts := CloudConfigStatefulSet("c", "n", Replicas(2), ResourceVersion("7"), Images("kms_eth:v1", "consensus_bft:v1"),
		SubPath("root"), PVCRetention("", appsv1.DeletePersistentVolumeClaimRetentionPolicyType), StorageClass(""))
	c := sts.Spec.Template.Spec.Containers
	if *sts.Spec.Replicas != 2 || sts.ResourceVersion != "7" || c[1].Image != "consensus_bft:v1" || c[5].Image != "kms_eth:v1" ||
		sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled != appsv1.DeletePersistentVolumeClaimRetentionPolicyType ||
		sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName != nil {
		t.Errorf("options did not reach the StatefulSet: %+v", sts.Spec)
	}
	// Each container has its own mounts: a test changing one changes one.
	c[0].VolumeMounts[0].SubPath = "changed"
	if c[1].VolumeMounts[0].SubPath != "root" {
		t.Error("the containers share their mounts")
	}
	if p := HelmStatefulSet("h", 3, SubPathExpr("x/$(POD_NAME)")).Spec.Template.Spec.Containers[0].VolumeMounts[0]; p.SubPath != "" || p.SubPathExpr != "x/$(POD_NAME)" {
		t.Errorf("helm mount %+v", p)
	}
	if pvc := PythonPVC("p", "n", Size("3Gi"), StorageClass("fast")); pvc.Name != "p-pvc" || pvc.Spec.Resources.Requests.Storage().String() != "3Gi" || *pvc.Spec.StorageClassName != "fast" {
		t.Errorf("python claim %+v", pvc)
	}
	if p := HelmPod("h", 2); p.Spec.NodeName != "machine-2" || p.Status.Phase != corev1.PodRunning {
		t.Errorf("helm pod on %q, %s", p.Spec.NodeName, p.Status.Phase)
	}
	if p := PythonPod("p", "n", "x", Machine("")); p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending {
		t.Errorf("unscheduled pod on %q, %s", p.Spec.NodeName, p.Status.Phase)
	}
	for name, objs := range map[string][]runtime.Object{
		"cloud-config": CloudConfigNode("c", "n", Stopped()),
		"helm":         HelmChain("h", 3, Stopped()),
		"python":       PythonNode("p", "n", Stopped()),
	} {
		for _, o := range objs {
			if p, ok := o.(*corev1.Pod); ok {
				t.Errorf("%s: stopped, yet pod %s", name, p.Name)
			}
		}
	}
}
