package nodeops

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

// located is what an operation reads from a located node.
type located struct {
	Key, Kind        string
	Replicas         int32
	DataClaim        string
	DataSubPath      string
	StorageClass     string
	Size             string
	AccessModes      []corev1.PersistentVolumeAccessMode
	ConfigMap        string
	AccountConfigMap string
	ConfigPath       string
	Crypto           string
	Consensus        string
}

func summarize(n *Node) located {
	return located{
		Key: n.Workload.Key(), Kind: n.Workload.Kind, Replicas: n.Workload.Replicas,
		DataClaim: n.DataClaim, DataSubPath: n.DataSubPath,
		StorageClass: n.StorageClass, Size: n.Size.String(), AccessModes: n.AccessModes,
		ConfigMap: n.ConfigMap, AccountConfigMap: n.AccountConfigMap, ConfigPath: n.ConfigPath(),
		Crypto: n.Crypto, Consensus: n.Consensus,
	}
}

var rwo = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}

func cloudTarget(name string) Target {
	return Target{Namespace: ns, Chain: "mychain", Name: name, Method: citav1.DeployMethodCloudConfig}
}

func helmTarget(chain, name string) Target {
	return Target{Namespace: ns, Chain: chain, Name: name, Method: citav1.DeployMethodHelm}
}

func pythonTarget(chain, name string) Target {
	return Target{Namespace: ns, Chain: chain, Name: name, Method: citav1.DeployMethodPython}
}

func TestLocate(t *testing.T) {
	tests := map[string]struct {
		objs   []runtime.Object
		target Target
		want   located
	}{
		"cloud-config: claim template, node root at the claim's root, config and account ConfigMaps": {
			objs:   []runtime.Object{nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape), nodetest.CloudConfigPVC("node0", inNS)},
			target: cloudTarget("node0"),
			want: located{
				Key: "StatefulSet/node0", Kind: "StatefulSet", Replicas: 1,
				DataClaim: "datadir-node0-0", DataSubPath: "",
				StorageClass: "local-path", Size: "10Gi", AccessModes: rwo,
				ConfigMap: "node0-config", AccountConfigMap: "node0-account", ConfigPath: "/cita/config/config.toml",
				Crypto: "sm", Consensus: "overlord",
			},
		},
		"cloud-config: the config ConfigMap its node-config volume names (a CitaNode's configMapRef)": {
			objs: []runtime.Object{func() *appsv1.StatefulSet {
				s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)
				for i, v := range s.Spec.Template.Spec.Volumes {
					if v.Name == ConfigVolume {
						s.Spec.Template.Spec.Volumes[i].ConfigMap.Name = "shared-config"
					}
				}
				return s
			}(), nodetest.CloudConfigPVC("node0", inNS)},
			target: cloudTarget("node0"),
			want: located{
				Key: "StatefulSet/node0", Kind: "StatefulSet", Replicas: 1,
				DataClaim: "datadir-node0-0", DataSubPath: "",
				StorageClass: "local-path", Size: "10Gi", AccessModes: rwo,
				ConfigMap: "shared-config", AccountConfigMap: "node0-account", ConfigPath: "/cita/config/config.toml",
				Crypto: "sm", Consensus: "overlord",
			},
		},
		"cloud-config: capacity preferred over request": {
			objs: []runtime.Object{nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape), func() *corev1.PersistentVolumeClaim {
				p := nodetest.CloudConfigPVC("node0", inNS)
				p.Status.Capacity[corev1.ResourceStorage] = resource.MustParse("12Gi")
				return p
			}()},
			target: cloudTarget("node0"),
			want: located{
				Key: "StatefulSet/node0", Kind: "StatefulSet", Replicas: 1,
				DataClaim: "datadir-node0-0", StorageClass: "local-path", Size: "12Gi", AccessModes: rwo,
				ConfigMap: "node0-config", AccountConfigMap: "node0-account", ConfigPath: "/cita/config/config.toml",
				Crypto: "sm", Consensus: "overlord",
			},
		},
		"cloud-config: pending claim without capacity or class: request, no class, no access modes": {
			objs: []runtime.Object{func() *appsv1.StatefulSet {
				s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)
				s.Spec.Replicas = nil // the apiserver default: one replica
				s.Spec.Template.Spec.Volumes = nil
				return s
			}(), func() *corev1.PersistentVolumeClaim {
				p := nodetest.CloudConfigPVC("node0", inNS, nodetest.Size("5Gi"), nodetest.StorageClass(""))
				p.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
				p.Spec.AccessModes = nil
				return p
			}()},
			target: cloudTarget("node0"),
			want: located{
				Key: "StatefulSet/node0", Kind: "StatefulSet", Replicas: 1,
				DataClaim: "datadir-node0-0", Size: "5Gi",
				ConfigMap: "node0-config", ConfigPath: "/cita/config/config.toml",
				Crypto: "sm", Consensus: "overlord",
			},
		},
		"cloud-config: datadir as a PVC volume mounted at a subPath": {
			objs: []runtime.Object{
				nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape, nodetest.Stopped(), nodetest.Claim("shared"), nodetest.SubPath("node0-root")),
				nodetest.PVC("shared", inNS, nodetest.Size("1Gi")),
			},
			target: cloudTarget("node0"),
			want: located{
				Key: "StatefulSet/node0", Kind: "StatefulSet", Replicas: 0,
				DataClaim: "shared", DataSubPath: "node0-root", StorageClass: "local-path", Size: "1Gi", AccessModes: rwo,
				ConfigMap: "node0-config", AccountConfigMap: "node0-account", ConfigPath: "/cita/config/config.toml",
				Crypto: "sm", Consensus: "overlord",
			},
		},
		"helm: chain StatefulSet, shared claim, subPathExpr $(POD_NAME) is the node name": {
			objs:   append([]runtime.Object{nodetest.HelmStatefulSet("mychain", 3, helmShape), nodetest.HelmPVC("mychain", inNS)}, nodetest.HelmPods("mychain", 3, inNS)...),
			target: helmTarget("mychain", "mychain-1"),
			want: located{
				Key: "StatefulSet/mychain", Kind: "StatefulSet", Replicas: 3,
				DataClaim: "mychain-data", DataSubPath: "mychain-1", StorageClass: "local-path", Size: "50Gi", AccessModes: rwo,
				ConfigPath: "/cita/node/config.toml", Crypto: "eth", Consensus: "raft",
			},
		},
		"helm: subPathExpr with a directory around $(POD_NAME)": {
			objs:   []runtime.Object{nodetest.HelmStatefulSet("mychain", 3, helmShape, nodetest.SubPathExpr("nodes/$(POD_NAME)/root")), nodetest.HelmPVC("mychain", inNS)},
			target: helmTarget("mychain", "mychain-2"),
			want: located{
				Key: "StatefulSet/mychain", Kind: "StatefulSet", Replicas: 3,
				DataClaim: "mychain-data", DataSubPath: "nodes/mychain-2/root", StorageClass: "local-path", Size: "50Gi", AccessModes: rwo,
				ConfigPath: "/cita/node/config.toml", Crypto: "eth", Consensus: "raft",
			},
		},
		"helm: literal subPath is used as written": {
			objs:   []runtime.Object{nodetest.HelmStatefulSet("mychain", 3, helmShape, nodetest.SubPath("fixed")), nodetest.HelmPVC("mychain", inNS)},
			target: helmTarget("mychain", "mychain-0"),
			want: located{
				Key: "StatefulSet/mychain", Kind: "StatefulSet", Replicas: 3,
				DataClaim: "mychain-data", DataSubPath: "fixed", StorageClass: "local-path", Size: "50Gi", AccessModes: rwo,
				ConfigPath: "/cita/node/config.toml", Crypto: "eth", Consensus: "raft",
			},
		},
		"helm: no subPath: the directory named after the node": {
			objs:   []runtime.Object{nodetest.HelmStatefulSet("mychain", 3, helmShape, nodetest.SubPath("")), nodetest.HelmPVC("mychain", inNS)},
			target: helmTarget("mychain", "mychain-0"),
			want: located{
				Key: "StatefulSet/mychain", Kind: "StatefulSet", Replicas: 3,
				DataClaim: "mychain-data", DataSubPath: "mychain-0", StorageClass: "local-path", Size: "50Gi", AccessModes: rwo,
				ConfigPath: "/cita/node/config.toml", Crypto: "eth", Consensus: "raft",
			},
		},
		"python: Deployment, chain claim at the node's subPath": {
			objs:   []runtime.Object{nodetest.PythonDeployment("mychain", "node1", pyShape), nodetest.PythonPVC("mychain", "node1", inNS)},
			target: pythonTarget("mychain", "node1"),
			want: located{
				Key: "Deployment/node1", Kind: "Deployment", Replicas: 1,
				DataClaim: "mychain-pvc", DataSubPath: "node1", StorageClass: "local-path", Size: "20Gi", AccessModes: rwo,
				ConfigPath: "/cita/node/config.toml", Crypto: "eth", Consensus: "bft",
			},
		},
		"python: no subPath is the claim's root; no chain label is accepted": {
			objs: []runtime.Object{func() *appsv1.Deployment {
				d := nodetest.PythonDeployment("mychain", "node1", pyShape, nodetest.Replicas(2), nodetest.SubPath(""))
				delete(d.Labels, PythonChainLabel)
				return d
			}(), nodetest.PythonPVC("mychain", "node1", inNS)},
			target: pythonTarget("mychain", "node1"),
			want: located{
				Key: "Deployment/node1", Kind: "Deployment", Replicas: 2,
				DataClaim: "mychain-pvc", StorageClass: "local-path", Size: "20Gi", AccessModes: rwo,
				ConfigPath: "/cita/node/config.toml", Crypto: "eth", Consensus: "bft",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n, err := Locate(newListers(t, tc.objs...), tc.target)
			if err != nil {
				t.Fatalf("Locate: %v", err)
			}
			if diff := cmp.Diff(tc.want, summarize(n)); diff != "" {
				t.Errorf("located node (-want +got):\n%s", diff)
			}
			if n.Target != tc.target {
				t.Errorf("Target = %+v, want %+v", n.Target, tc.target)
			}
		})
	}
}

func TestLocateInvalid(t *testing.T) {
	// Each case names the objects in the cluster, the target and the words
	// the reason must contain: it has to tell the user what is wrong where.
	tests := map[string]struct {
		objs   []runtime.Object
		target Target
		want   []string
	}{
		"unknown deployMethod": {
			target: Target{Namespace: ns, Name: "node0", Method: "kustomize"},
			want:   []string{`unknown deployMethod "kustomize"`},
		},
		"cloud-config: no StatefulSet": {
			target: cloudTarget("node0"),
			want:   []string{"node StatefulSet chains/node0 does not exist"},
		},
		"cloud-config: a Deployment where a StatefulSet is expected": {
			objs:   []runtime.Object{nodetest.PythonDeployment("mychain", "node0", pyShape)},
			target: cloudTarget("node0"),
			want:   []string{"node chains/node0 is a Deployment, not a StatefulSet", "deployMethod"},
		},
		"cloud-config: whenScaled Delete would delete the data": {
			objs: []runtime.Object{
				nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape,
					nodetest.PVCRetention(appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType)),
				nodetest.CloudConfigPVC("node0", inNS),
			},
			target: cloudTarget("node0"),
			want:   []string{"StatefulSet chains/node0", "whenScaled: Delete"},
		},
		"cloud-config: invalid selector": {
			objs: []runtime.Object{func() *appsv1.StatefulSet {
				s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)
				s.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}
				return s
			}(), nodetest.CloudConfigPVC("node0", inNS)},
			target: cloudTarget("node0"),
			want:   []string{"StatefulSet chains/node0 has an invalid selector"},
		},
		"cloud-config: no datadir volume": {
			objs: []runtime.Object{func() *appsv1.StatefulSet {
				s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)
				s.Spec.VolumeClaimTemplates[0].Name = "data"
				return s
			}()},
			target: cloudTarget("node0"),
			want:   []string{`StatefulSet/node0 has no "datadir" volume`},
		},
		"cloud-config: datadir is not a PVC": {
			objs: []runtime.Object{func() *appsv1.StatefulSet {
				s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)
				s.Spec.VolumeClaimTemplates = nil
				s.Spec.Template.Spec.Volumes = append(s.Spec.Template.Spec.Volumes, corev1.Volume{Name: DataVolume,
					VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
				return s
			}()},
			target: cloudTarget("node0"),
			want:   []string{`StatefulSet/node0: volume "datadir" is not a PersistentVolumeClaim`},
		},
		"cloud-config: no container mounts datadir": {
			objs: []runtime.Object{func() *appsv1.StatefulSet {
				s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)
				for i := range s.Spec.Template.Spec.Containers {
					s.Spec.Template.Spec.Containers[i].VolumeMounts = nil
				}
				return s
			}(), nodetest.CloudConfigPVC("node0", inNS)},
			target: cloudTarget("node0"),
			want:   []string{`StatefulSet/node0: no container mounts the "datadir" volume`},
		},
		"cloud-config: data PVC missing": {
			objs:   []runtime.Object{nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)},
			target: cloudTarget("node0"),
			want:   []string{"data PVC chains/datadir-node0-0 does not exist"},
		},
		"helm: no chain StatefulSet": {
			target: helmTarget("mychain", "mychain-0"),
			want:   []string{"chain StatefulSet chains/mychain does not exist"},
		},
		"helm: the chain is a Deployment": {
			objs:   []runtime.Object{nodetest.PythonDeployment("mychain", "mychain", pyShape)},
			target: helmTarget("mychain", "mychain-0"),
			want:   []string{"chain chains/mychain is a Deployment, not a StatefulSet"},
		},
		"helm: node not named <chain>-<i>": {
			objs:   []runtime.Object{nodetest.HelmStatefulSet("mychain", 3, helmShape), nodetest.HelmPVC("mychain", inNS)},
			target: helmTarget("mychain", "node0"),
			want:   []string{`node "node0" is not a pod of the chain's StatefulSet mychain`, "mychain-<ordinal>"},
		},
		"helm: whenScaled Delete": {
			objs:   []runtime.Object{nodetest.HelmStatefulSet("mychain", 3, helmShape, nodetest.PVCRetention("", appsv1.DeletePersistentVolumeClaimRetentionPolicyType))},
			target: helmTarget("mychain", "mychain-0"),
			want:   []string{"StatefulSet chains/mychain", "whenScaled: Delete"},
		},
		"helm: no datadir volume": {
			objs: []runtime.Object{func() *appsv1.StatefulSet {
				s := nodetest.HelmStatefulSet("mychain", 3, helmShape)
				s.Spec.Template.Spec.Volumes[0].Name = "data"
				return s
			}()},
			target: helmTarget("mychain", "mychain-0"),
			want:   []string{`StatefulSet/mychain has no "datadir" volume`},
		},
		"helm: no container mounts datadir": {
			objs: []runtime.Object{func() *appsv1.StatefulSet {
				s := nodetest.HelmStatefulSet("mychain", 3, helmShape)
				for i := range s.Spec.Template.Spec.Containers {
					s.Spec.Template.Spec.Containers[i].VolumeMounts[0].Name = "other"
				}
				return s
			}(), nodetest.HelmPVC("mychain", inNS)},
			target: helmTarget("mychain", "mychain-0"),
			want:   []string{`StatefulSet/mychain: no container mounts the "datadir" volume`},
		},
		"helm: data PVC missing": {
			objs:   []runtime.Object{nodetest.HelmStatefulSet("mychain", 3, helmShape)},
			target: helmTarget("mychain", "mychain-0"),
			want:   []string{"data PVC chains/mychain-data does not exist"},
		},
		"python: no Deployment": {
			target: pythonTarget("mychain", "node1"),
			want:   []string{"node Deployment chains/node1 does not exist"},
		},
		"python: a StatefulSet where a Deployment is expected": {
			objs:   []runtime.Object{nodetest.CloudConfigStatefulSet("mychain", "node1", ccShape), nodetest.CloudConfigPVC("node1", inNS)},
			target: pythonTarget("mychain", "node1"),
			want:   []string{"node chains/node1 is a StatefulSet, not a Deployment", "deployMethod"},
		},
		"python: Deployment of another chain": {
			objs:   []runtime.Object{nodetest.PythonDeployment("otherchain", "node1", pyShape), nodetest.PythonPVC("otherchain", "node1", inNS)},
			target: pythonTarget("mychain", "node1"),
			want:   []string{`Deployment chains/node1 belongs to chain "otherchain", not "mychain"`},
		},
		"python: invalid selector": {
			objs: []runtime.Object{func() *appsv1.Deployment {
				d := nodetest.PythonDeployment("mychain", "node1", pyShape)
				d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}
				return d
			}()},
			target: pythonTarget("mychain", "node1"),
			want:   []string{"Deployment chains/node1 has an invalid selector"},
		},
		"python: datadir is not a PVC": {
			objs: []runtime.Object{func() *appsv1.Deployment {
				d := nodetest.PythonDeployment("mychain", "node1", pyShape)
				d.Spec.Template.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv"}}
				return d
			}()},
			target: pythonTarget("mychain", "node1"),
			want:   []string{`Deployment/node1: volume "datadir" is not a PersistentVolumeClaim`},
		},
		"python: no container mounts datadir": {
			objs: []runtime.Object{func() *appsv1.Deployment {
				d := nodetest.PythonDeployment("mychain", "node1", pyShape)
				for i := range d.Spec.Template.Spec.Containers {
					d.Spec.Template.Spec.Containers[i].VolumeMounts = nil
				}
				return d
			}()},
			target: pythonTarget("mychain", "node1"),
			want:   []string{`Deployment/node1: no container mounts the "datadir" volume`},
		},
		"python: data PVC missing": {
			objs:   []runtime.Object{nodetest.PythonDeployment("mychain", "node1", pyShape)},
			target: pythonTarget("mychain", "node1"),
			want:   []string{"data PVC chains/mychain-pvc does not exist"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n, err := Locate(newListers(t, tc.objs...), tc.target)
			if err == nil {
				t.Fatalf("Locate = %+v, want an *InvalidError", summarize(n))
			}
			reason := invalidReason(err)
			if reason == "" {
				t.Fatalf("Locate error %v (%T) is not an *InvalidError", err, err)
			}
			if reason != err.Error() {
				t.Errorf("Error() = %q, want the reason %q", err.Error(), reason)
			}
			for _, w := range tc.want {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q does not contain %q", reason, w)
				}
			}
		})
	}
}

// A cache that fails is not bad input: the error is passed on as it is, so
// the operation is retried instead of failed.
func TestLocateCacheError(t *testing.T) {
	l := newListers(t, nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape))
	l.PVCs = errPVCLister{}
	_, err := Locate(l, cloudTarget("node0"))
	if !errors.Is(err, errCache) {
		t.Fatalf("Locate error = %v, want %v", err, errCache)
	}
	if invalidReason(err) != "" {
		t.Errorf("a cache error was reported as invalid input: %v", err)
	}
}

// The helm chart's node name must be a pod of the chain's StatefulSet. A
// prefix alone lets through names that are no pod of it.
func TestLocateHelmNodeNameNotAnOrdinal(t *testing.T) {
	tests := map[string]string{
		"not an ordinal":         "mychain-foo",
		"a pod of another chain": "mychain-b-0",
		"empty ordinal":          "mychain-",
	}
	for name, node := range tests {
		t.Run(name, func(t *testing.T) {
			objs := append([]runtime.Object{nodetest.HelmStatefulSet("mychain", 3, helmShape), nodetest.HelmPVC("mychain", inNS)}, nodetest.HelmPods("mychain", 3, inNS)...)
			_, err := Locate(newListers(t, objs...), helmTarget("mychain", node))
			if invalidReason(err) == "" {
				t.Fatalf("Locate(%q) error = %v, want an *InvalidError", node, err)
			}
		})
	}
}

// A helm StatefulSet whose datadir is a volumeClaimTemplate gives every pod
// its own PVC datadir-<chain>-<ordinal>; node <chain>-2's data is not in
// datadir-<chain>-0.
func TestLocateHelmClaimTemplateOrdinal(t *testing.T) {
	s := nodetest.HelmStatefulSet("mychain", 3, helmShape)
	s.Spec.Template.Spec.Volumes = nil
	s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: DataVolume}}}
	objs := []runtime.Object{s, nodetest.PVC("datadir-mychain-0", inNS), nodetest.PVC("datadir-mychain-1", inNS), nodetest.PVC("datadir-mychain-2", inNS)}
	n, err := Locate(newListers(t, objs...), helmTarget("mychain", "mychain-2"))
	if err != nil && invalidReason(err) == "" {
		t.Fatalf("Locate: %v", err)
	}
	if err == nil && n.DataClaim != "datadir-mychain-2" {
		t.Errorf("DataClaim = %q, want datadir-mychain-2 (or an *InvalidError)", n.DataClaim)
	}
}

func TestCryptoAndConsensus(t *testing.T) {
	tests := map[string]struct {
		init, containers  []string
		crypto, consensus string
	}{
		"kms_sm and overlord with tags": {
			containers: []string{"citacloud/kms_sm:v6.6.0", "citacloud/consensus_overlord:v6.6.0"},
			crypto:     "sm", consensus: "overlord",
		},
		"crypto_eth and raft behind a registry with a port": {
			containers: []string{"registry.local:5000/citacloud/crypto_eth:v6.7.0", "registry.local:5000/citacloud/consensus_raft:v6.7.0"},
			crypto:     "eth", consensus: "raft",
		},
		"digest, tag and digest, no path": {
			containers: []string{"kms_eth@sha256:0123456789abcdef", "localhost:5000/consensus_bft:v6.7.0@sha256:0123456789abcdef"},
			crypto:     "eth", consensus: "bft",
		},
		"untagged images": {
			containers: []string{"docker.io/citacloud/crypto_sm", "consensus_raft"},
			crypto:     "sm", consensus: "raft",
		},
		"init containers count, the first match wins": {
			init:       []string{"citacloud/kms_sm:v6.6.0"},
			containers: []string{"citacloud/crypto_eth:v6.7.0", "citacloud/consensus_bft:v6.7.0", "citacloud/consensus_raft:v6.7.0"},
			crypto:     "sm", consensus: "bft",
		},
		"no node images": {
			containers: []string{"citacloud/executor_evm:v6.7.0", "busybox:1.36", "registry:5000/kms-helper:v1"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var tpl corev1.PodTemplateSpec
			for i, img := range tc.init {
				tpl.Spec.InitContainers = append(tpl.Spec.InitContainers, corev1.Container{Name: "init" + string(rune('a'+i)), Image: img})
			}
			for i, img := range tc.containers {
				tpl.Spec.Containers = append(tpl.Spec.Containers, corev1.Container{Name: "c" + string(rune('a'+i)), Image: img})
			}
			crypto, consensus := cryptoAndConsensus(&tpl)
			if diff := cmp.Diff([2]string{tc.crypto, tc.consensus}, [2]string{crypto, consensus}); diff != "" {
				t.Errorf("crypto, consensus (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIsOriginalJobImage(t *testing.T) {
	tests := map[string]struct {
		image string
		want  bool
	}{
		"original project's image":        {"citacloud/cita-node-job:v0.0.5", true},
		"original behind a registry port": {"registry.local:5000/cita-cloud/cita-node-job@sha256:abc", true},
		"untagged original":               {"cita-node-job", true},
		"this project's image":            {"citacloud/cita-node-operator-job:v1.0.0", false},
		"name only as a tag":              {"citacloud/job:cita-node-job", false},
		"name only as a registry path":    {"cita-node-job/other:v1", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := IsOriginalJobImage(tc.image); got != tc.want {
				t.Errorf("IsOriginalJobImage(%q) = %v, want %v", tc.image, got, tc.want)
			}
		})
	}
}

func TestWorkloadKey(t *testing.T) {
	tests := map[string]struct {
		target Target
		want   string
	}{
		"cloud-config: the node's StatefulSet": {cloudTarget("node0"), "StatefulSet/node0"},
		"helm: the chain's StatefulSet":        {helmTarget("mychain", "mychain-1"), "StatefulSet/mychain"},
		"python: the node's Deployment":        {pythonTarget("mychain", "node1"), "Deployment/node1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := WorkloadKey(tc.target); got != tc.want {
				t.Errorf("WorkloadKey = %q, want %q", got, tc.want)
			}
		})
	}
	// The key computed from the target alone is the key of the workload
	// Locate finds: waiting operations are indexed by one, locks taken on
	// the other.
	objs := append([]runtime.Object{
		nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape), nodetest.CloudConfigPVC("node0", inNS),
		nodetest.HelmStatefulSet("mychain", 3, helmShape), nodetest.HelmPVC("mychain", inNS),
		nodetest.PythonDeployment("mychain", "node1", pyShape), nodetest.PythonPVC("mychain", "node1", inNS),
	}, nodetest.HelmPods("mychain", 3, inNS)...)
	l := newListers(t, objs...)
	for name, tc := range tests {
		t.Run("Locate agrees/"+name, func(t *testing.T) {
			n, err := Locate(l, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if got := n.Workload.Key(); got != WorkloadKey(tc.target) {
				t.Errorf("Workload.Key() = %q, WorkloadKey = %q", got, WorkloadKey(tc.target))
			}
		})
	}
}

func TestPodsAndMachine(t *testing.T) {
	terminating := func(p *corev1.Pod) *corev1.Pod {
		p.DeletionTimestamp = &metav1.Time{}
		p.Status.Phase = corev1.PodRunning
		return p
	}
	unscheduled := nodetest.Machine("")
	base := []runtime.Object{
		nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape), nodetest.CloudConfigPVC("node0", inNS),
		nodetest.HelmStatefulSet("mychain", 3, helmShape), nodetest.HelmPVC("mychain", inNS),
		nodetest.PythonDeployment("mychain", "node1", pyShape), nodetest.PythonPVC("mychain", "node1", inNS),
	}
	tests := map[string]struct {
		target      Target
		pods        []runtime.Object
		wantPods    []string
		wantMachine string
	}{
		"cloud-config: its pod": {
			target: cloudTarget("node0"),
			pods: []runtime.Object{
				nodetest.CloudConfigPod("mychain", "node0", inNS, nodetest.Machine("machine-a")),
				nodetest.CloudConfigPod("mychain", "node00", inNS, nodetest.Machine("machine-b")),
			},
			wantPods: []string{"node0-0"}, wantMachine: "machine-a",
		},
		"cloud-config: a terminating pod still counts": {
			target:   cloudTarget("node0"),
			pods:     []runtime.Object{terminating(nodetest.CloudConfigPod("mychain", "node0", inNS, nodetest.Machine("machine-a")))},
			wantPods: []string{"node0-0"}, wantMachine: "machine-a",
		},
		"cloud-config: unscheduled pod: no machine": {
			target:   cloudTarget("node0"),
			pods:     []runtime.Object{nodetest.CloudConfigPod("mychain", "node0", inNS, unscheduled)},
			wantPods: []string{"node0-0"},
		},
		"cloud-config: stopped: no pods, no machine": {
			target: cloudTarget("node0"),
		},
		"helm: only the node's own pod counts": {
			target: helmTarget("mychain", "mychain-1"),
			pods: append(nodetest.HelmPods("mychain", 3, inNS),
				nodetest.HelmPod("mychain", 1, nodetest.Namespace("elsewhere"), nodetest.Machine("machine-other-ns"))),
			wantPods: []string{"mychain-1"}, wantMachine: "machine-1",
		},
		"helm: the node's pod is gone, its siblings are not": {
			target:   helmTarget("mychain", "mychain-2"),
			pods:     nodetest.HelmPods("mychain", 2, inNS),
			wantPods: nil,
		},
		"helm: terminating own pod counts": {
			target:   helmTarget("mychain", "mychain-0"),
			pods:     []runtime.Object{terminating(nodetest.HelmPod("mychain", 0, inNS, nodetest.Machine("machine-0"))), nodetest.HelmPod("mychain", 1, inNS, nodetest.Machine("machine-1"))},
			wantPods: []string{"mychain-0"}, wantMachine: "machine-0",
		},
		"python: pods of the Deployment, an unscheduled one skipped for the machine": {
			target: pythonTarget("mychain", "node1"),
			pods: []runtime.Object{
				nodetest.PythonPod("mychain", "node1", "aaaaa", inNS, unscheduled),
				terminating(nodetest.PythonPod("mychain", "node1", "bbbbb", inNS, nodetest.Machine("machine-c"))),
				nodetest.PythonPod("mychain", "node2", "ccccc", inNS, nodetest.Machine("machine-d")),
			},
			wantPods: []string{"node1-5d8f7c-aaaaa", "node1-5d8f7c-bbbbb"}, wantMachine: "machine-c",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l := newListers(t, append(append([]runtime.Object{}, base...), tc.pods...)...)
			n, err := Locate(l, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			pods, err := n.Pods(l.Pods)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range pods {
				names = append(names, p.Name)
			}
			if diff := cmp.Diff(tc.wantPods, names, sortStrings); diff != "" {
				t.Errorf("Pods (-want +got):\n%s", diff)
			}
			for _, o := range tc.pods {
				p := o.(*corev1.Pod)
				want := p.Namespace == ns && contains(tc.wantPods, p.Name)
				if got := n.IsPod(p); got != want {
					t.Errorf("IsPod(%s/%s) = %v, want %v", p.Namespace, p.Name, got, want)
				}
			}
			// At most one of the node's pods is scheduled in each case: the
			// lister promises no order.
			m, err := n.Machine(l.Pods)
			if err != nil {
				t.Fatal(err)
			}
			if m != tc.wantMachine {
				t.Errorf("Machine = %q, want %q", m, tc.wantMachine)
			}
		})
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

var sortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestCheckConfig(t *testing.T) {
	errAPI := errors.New("apiserver unavailable")
	tests := map[string]struct {
		target   Target
		exists   func(namespace, name string) (bool, error)
		asked    string
		wantErr  error
		wantText string
	}{
		"cloud-config: the ConfigMap exists": {
			target: cloudTarget("node0"),
			exists: func(string, string) (bool, error) { return true, nil },
			asked:  "chains/node0-config",
		},
		"cloud-config: the ConfigMap is missing": {
			target:   cloudTarget("node0"),
			exists:   func(string, string) (bool, error) { return false, nil },
			asked:    "chains/node0-config",
			wantText: "the node's config ConfigMap chains/node0-config does not exist",
		},
		"cloud-config: the lookup fails": {
			target:  cloudTarget("node0"),
			exists:  func(string, string) (bool, error) { return false, errAPI },
			asked:   "chains/node0-config",
			wantErr: errAPI,
		},
		"python: config is in the data directory, nothing to ask": {
			target: pythonTarget("mychain", "node1"),
			exists: func(string, string) (bool, error) { return false, errAPI },
		},
		"helm: config is in the data directory, nothing to ask": {
			target: helmTarget("mychain", "mychain-0"),
			exists: func(string, string) (bool, error) { return false, errAPI },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l := newListers(t, nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape), nodetest.CloudConfigPVC("node0", inNS),
				nodetest.PythonDeployment("mychain", "node1", pyShape), nodetest.PythonPVC("mychain", "node1", inNS),
				nodetest.HelmStatefulSet("mychain", 1, helmShape), nodetest.HelmPVC("mychain", inNS))
			n, err := Locate(l, tc.target)
			if err != nil {
				t.Fatal(err)
			}
			var asked string
			l.ConfigMapExists = func(namespace, name string) (bool, error) {
				asked = namespace + "/" + name
				return tc.exists(namespace, name)
			}
			err = n.CheckConfig(l)
			if asked != tc.asked {
				t.Errorf("asked for ConfigMap %q, want %q", asked, tc.asked)
			}
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) || invalidReason(err) != "" {
					t.Errorf("CheckConfig = %v, want %v passed on", err, tc.wantErr)
				}
			case tc.wantText != "":
				if got := invalidReason(err); got != tc.wantText {
					t.Errorf("CheckConfig reason = %q (err %v), want %q", got, err, tc.wantText)
				}
			case err != nil:
				t.Errorf("CheckConfig = %v, want nil", err)
			}
		})
	}
}

func TestWorkloadWrappers(t *testing.T) {
	s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape)
	s.Spec.Replicas = nil
	s.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}
	w := StatefulSetWorkload(s)
	if w.Selector != nil || w.Replicas != 1 || w.Key() != "StatefulSet/node0" || w.Object != s || len(w.ClaimTemplates) != 1 {
		t.Errorf("StatefulSetWorkload = %+v, want nil selector, 1 replica, key StatefulSet/node0, the object and its claim template", w)
	}
	d := nodetest.PythonDeployment("mychain", "node1", pyShape)
	d.Spec.Replicas = ptr.To[int32](4)
	dw := DeploymentWorkload(d)
	if dw.Selector == nil || dw.Replicas != 4 || dw.Key() != "Deployment/node1" || dw.Object != d || dw.Template != &d.Spec.Template {
		t.Errorf("DeploymentWorkload = %+v, want a selector, 4 replicas, key Deployment/node1, the object and its template", dw)
	}
}

// A python or cloud-config node whose containers mount datadir with
// subPathExpr keep their root in a sub-directory Locate must resolve, or
// refuse; it must not take the claim's root, where (python) every node of
// the chain keeps its directory.
func TestLocateSubPathExprOutsideHelm(t *testing.T) {
	d := nodetest.PythonDeployment("mychain", "node1", pyShape, nodetest.SubPathExpr("$(NODE_NAME)"))
	s := nodetest.CloudConfigStatefulSet("mychain", "node0", ccShape, nodetest.SubPathExpr("$(POD_NAME)"))
	l := newListers(t, d, nodetest.PythonPVC("mychain", "node1", inNS), s, nodetest.CloudConfigPVC("node0", inNS))
	for name, target := range map[string]Target{"python": pythonTarget("mychain", "node1"), "cloud-config": cloudTarget("node0")} {
		t.Run(name, func(t *testing.T) {
			n, err := Locate(l, target)
			if err == nil && n.DataSubPath == "" {
				t.Errorf("DataSubPath = \"\" (the claim's root), want the node's directory or an *InvalidError")
			}
		})
	}
}
