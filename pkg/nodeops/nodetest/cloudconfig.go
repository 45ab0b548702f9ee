package nodetest

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func cloudConfigLabels(chain, node string) map[string]string {
	return map[string]string{CloudConfigChainLabel: chain, CloudConfigNodeLabel: node}
}

// CloudConfigStatefulSet is what cloud-config deploys for a node: a
// StatefulSet named after it whose datadir claim template holds the node
// root at the claim's root, with the ConfigMap volumes node-account
// (<node>-account, first) and node-config (<node>-config).
func CloudConfigStatefulSet(chain, node string, opts ...Option) *appsv1.StatefulSet {
	s := apply(opts)
	sts := &appsv1.StatefulSet{
		ObjectMeta: s.meta(node, cloudConfigLabels(chain, node), "uid-sts-"+node),
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(s.replicas),
			ServiceName: node,
			Selector:    &metav1.LabelSelector{MatchLabels: cloudConfigLabels(chain, node)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: cloudConfigLabels(chain, node)},
				Spec: corev1.PodSpec{
					Containers: s.containers(
						corev1.VolumeMount{Name: ConfigVolume, MountPath: "/etc/cita-cloud/config"},
						corev1.VolumeMount{Name: AccountVolume, MountPath: "/mnt"}),
					Volumes: []corev1.Volume{
						configMapVolume(AccountVolume, node+"-account"),
						configMapVolume(ConfigVolume, node+"-config"),
					},
				},
			},
			VolumeClaimTemplates:                 []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: DataVolume}, Spec: s.claimSpec()}},
			PersistentVolumeClaimRetentionPolicy: s.retention,
		},
	}
	if s.claim != "" {
		sts.Spec.VolumeClaimTemplates = nil
		sts.Spec.Template.Spec.Volumes = append(sts.Spec.Template.Spec.Volumes, claimVolume(s.claim))
	}
	return sts
}

// CloudConfigConfigMaps are the node's ConfigMaps: <node>-config with its
// config.toml, <node>-account with its account.
func CloudConfigConfigMaps(chain, node string, opts ...Option) []*corev1.ConfigMap {
	s := apply(opts)
	cm := func(name string, data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, Labels: cloudConfigLabels(chain, node), ResourceVersion: s.resourceVersion},
			Data:       data,
		}
	}
	account := cm(node+"-account", map[string]string{"node_address": testAddress, "validator_address": testAddress})
	account.BinaryData = map[string][]byte{"private_key": []byte("0x" + strings.Repeat("ab", 32))}
	return []*corev1.ConfigMap{
		cm(node+"-config", map[string]string{"config.toml": ConfigToml(node, "raft")}),
		account,
	}
}

const testAddress = "0x1234567890abcdef1234567890abcdef12345678"

// ConfigToml is a node's config.toml in the shape cloud-config 6.7's
// update-node writes it (cita-cloud/cloud-config src/update_node.rs and
// src/config/*.rs), for consensus raft or overlord: every section the
// node's services read, each naming the node as its domain.
func ConfigToml(node, consensus string) string {
	consensusSection := `[consensus_raft]
controller_port = 50004
grpc_listen_port = 50001
network_port = 50000
node_addr = "/mnt/node_address"
domain = "` + node + `"
`
	if consensus == "overlord" {
		consensusSection = `[consensus_overlord]
consensus_port = 50001
controller_port = 50004
network_port = 50000
domain = "` + node + `"
`
	}
	return `[network_zenoh]
domain = "` + node + `"
grpc_port = 50000
port = 40000
protocol = "quic"
node_address = "/mnt/node_address"
validator_address = "/mnt/validator_address"

` + consensusSection + `
[executor_evm]
domain = "` + node + `"
executor_port = 50002

[storage_opendal]
domain = "` + node + `"
storage_port = 50003

[controller]
domain = "` + node + `"
consensus_port = 50001
controller_port = 50004
executor_port = 50002
network_port = 50000
storage_port = 50003
node_address = "/mnt/node_address"
validator_address = "/mnt/validator_address"

[genesis_block]
prevhash = "0x0000000000000000000000000000000000000000000000000000000000000000"
timestamp = 1700000000000

[system_config]
admin = "` + testAddress + `"
block_interval = 3
block_limit = 100
chain_id = "0x63586a3c0255f337c77a777ff54f0040b8c388da04f23ecee6bfd4953a6512b4"
quota_limit = 1073741824
validators = ["` + testAddress + `"]
version = 0
`
}

// CloudConfigPVC is the node's data claim: the one the StatefulSet
// controller makes from the claim template, datadir-<node>-0 (or the Claim).
func CloudConfigPVC(node string, opts ...Option) *corev1.PersistentVolumeClaim {
	s := apply(opts)
	name := DataVolume + "-" + node + "-0"
	if s.claim != "" {
		name = s.claim
	}
	return s.pvc(name)
}

// CloudConfigPod is the node's pod, <node>-0.
func CloudConfigPod(chain, node string, opts ...Option) *corev1.Pod {
	return apply(opts).pod(node+"-0", cloudConfigLabels(chain, node), "StatefulSet", node, "uid-sts-"+node)
}

// CloudConfigNode is a cloud-config node in the cluster: its StatefulSet,
// ConfigMaps and data claim, and its pod while it runs.
func CloudConfigNode(chain, node string, opts ...Option) []runtime.Object {
	objs := []runtime.Object{CloudConfigStatefulSet(chain, node, opts...)}
	for _, cm := range CloudConfigConfigMaps(chain, node, opts...) {
		objs = append(objs, cm)
	}
	objs = append(objs, CloudConfigPVC(node, opts...))
	if apply(opts).replicas > 0 {
		objs = append(objs, CloudConfigPod(chain, node, opts...))
	}
	return objs
}
