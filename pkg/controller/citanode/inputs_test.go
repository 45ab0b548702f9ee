package citanode

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

// The config.toml cloud-config 6.7.4's update-node writes for
// test-chain-node0 of a k8s chain (src/update_node.rs, one section at a time
// with toml::to_string_pretty, the fields in the order of src/config/*.rs):
// the node's name as every domain, the account files under /mnt, its peers
// by their Services' names. Certificates and keys are cut short.
const (
	networkSection = `[network_zenoh]
grpc_port = 50000
domain = "test-chain-node0"
protocol = "quic"
port = 40000
ca_cert = '''
-----BEGIN CERTIFICATE-----
MIIBcDCCARagAwIBAgIUYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowCgYIKoEc
-----END CERTIFICATE-----
'''
cert = '''
-----BEGIN CERTIFICATE-----
MIIBgzCCASmgAwIBAgIUZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmMwCgYIKoEc
-----END CERTIFICATE-----
'''
priv_key = '''
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqBHM9VAYItBG0wawIBAQQgbm9kZTAta2V5LWZv
-----END PRIVATE KEY-----
'''
node_address = "/mnt/node_address"
validator_address = "/mnt/validator_address"
chain_id = "63586a3c0255f337c77a777ff54f0040b8c388da04f23ecee6bfd4953a6512b4"
metrics_port = 60000
enable_metrics = true

[[network_zenoh.peers]]
protocol = "quic"
port = 40000
domain = "test-chain-node1"

[[network_zenoh.peers]]
protocol = "quic"
port = 40000
domain = "test-chain-node2"

[[network_zenoh.modules]]
module_name = "consensus"
hostname = "localhost"
port = 50001

[[network_zenoh.modules]]
module_name = "controller"
hostname = "localhost"
port = 50004

[network_zenoh.log_config]
max_level = "info"
filter = "info"
service_name = "network"
`
	raftSection = `[consensus_raft]
network_port = 50000
controller_port = 50004
node_addr = "/mnt/node_address"
grpc_listen_port = 50001
metrics_port = 60001
enable_metrics = true
log_level = "info"
`
	overlordSection = `[consensus_overlord]
domain = "test-chain-node0"
controller_port = 50004
consensus_port = 50001
network_port = 50000
metrics_port = 60001
enable_metrics = true

[consensus_overlord.log_config]
max_level = "info"
filter = "info"
service_name = "consensus"
`
	restSections = `[executor_evm]
domain = "test-chain-node0"
executor_port = 50002
metrics_port = 60002
enable_metrics = true

[executor_evm.log_config]
max_level = "info"
filter = "info"
service_name = "executor"

[storage_opendal]
domain = "test-chain-node0"
storage_port = 50003
metrics_port = 60003
enable_metrics = true

[storage_opendal.log_config]
max_level = "info"
filter = "info"
service_name = "storage"

[storage_opendal.cloud_storage]
access_key_id = ""
secret_access_key = ""
endpoint = ""
bucket = ""
service_type = ""
root = ""
region = ""

[storage_opendal.exporter]
base_path = ""
chain_name = ""

[genesis_block]
timestamp = 1700000000000
prevhash = "0x0000000000000000000000000000000000000000000000000000000000000000"

[system_config]
version = 0
chain_id = "63586a3c0255f337c77a777ff54f0040b8c388da04f23ecee6bfd4953a6512b4"
admin = "0x9bab5858ef3ee2ec1a5e8d3a2f4a3ec9d7d64a5e"
block_interval = 3
validators = ["0x415f568207d4f5b1a0b9b0ab3e4d4bd5f5df3b9b", "0x2b6ad3bba3f1db9dbf32f2bd6a0bd1e4b2efb8dd"]
block_limit = 100
quota_limit = 1073741824

[controller]
domain = "test-chain-node0"
network_port = 50000
consensus_port = 50001
executor_port = 50002
storage_port = 50003
controller_port = 50004
node_address = "/mnt/node_address"
validator_address = "/mnt/validator_address"
metrics_port = 60004
enable_metrics = true
is_danger = false
tx_persistence = false

[controller.log_config]
max_level = "info"
filter = "info"
service_name = "controller"
`
)

func cloudConfigTOML(k citav1.ConsensusKind) string {
	consensus := raftSection
	if k == citav1.ConsensusOverlord {
		consensus = overlordSection
	}
	return networkSection + "\n" + consensus + "\n" + restSections
}

func configMap(toml string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-config", Namespace: ns},
		Data:       map[string]string{"config.toml": toml},
	}
}

// account is cloud-config's cm-account.yaml as the controller reads it:
// data node_address and validator_address, binaryData private_key.
func account() map[string][]byte {
	return map[string][]byte{
		"node_address":      []byte("0x415f568207d4f5b1a0b9b0ab3e4d4bd5f5df3b9b"),
		"validator_address": []byte("0x415f568207d4f5b1a0b9b0ab3e4d4bd5f5df3b9b"),
		"private_key":       []byte("0x3ef2627393529fed043c7dbfd9358a4ae47a88a59949b07e7631722fd6959002"),
	}
}

func TestCheckInputs(t *testing.T) {
	without := func(keys ...string) map[string][]byte {
		a := account()
		for _, k := range keys {
			delete(a, k)
		}
		return a
	}
	edit := func(k citav1.ConsensusKind, old, new string) *corev1.ConfigMap {
		toml := cloudConfigTOML(k)
		if !strings.Contains(toml, old) {
			panic("config.toml has no " + old)
		}
		return configMap(strings.Replace(toml, old, new, 1))
	}
	tests := map[string]struct {
		cn      *citav1.CitaNode
		config  *corev1.ConfigMap
		account map[string][]byte
		reason  string // "" for no error
	}{
		"raft, as cloud-config writes it": {
			cn: citaNode(citav1.ConsensusRaft), config: configMap(cloudConfigTOML(citav1.ConsensusRaft)), account: account(),
		},
		"overlord, as cloud-config writes it": {
			cn: citaNode(citav1.ConsensusOverlord), config: configMap(cloudConfigTOML(citav1.ConsensusOverlord)), account: account(),
		},
		"a Secret account, config.toml in binaryData": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) { cn.Spec.Account.Secret = "node0-keys" }),
			config: &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: node + "-config", Namespace: ns},
				BinaryData: map[string][]byte{"config.toml": []byte(cloudConfigTOML(citav1.ConsensusRaft))},
			},
			account: account(),
		},
		"the name is not <chainName>-<domain>": {
			cn:     citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) { cn.Spec.ChainName = "other-chain" }),
			config: configMap(cloudConfigTOML(citav1.ConsensusRaft)), account: account(),
			reason: `the CitaNode's name "test-chain-node0" is not <chainName>-<domain> (chainName "other-chain")`,
		},
		"the name is the chain's alone": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) {
				cn.Name = "test-chain-"
			}),
			config: configMap(cloudConfigTOML(citav1.ConsensusRaft)), account: account(),
			reason: "is not <chainName>-<domain>",
		},
		"an unknown consensus": {
			cn:     citaNode("bft"),
			config: configMap(cloudConfigTOML(citav1.ConsensusRaft)), account: account(),
			reason: `spec.consensus "bft": not raft or overlord`,
		},
		"no config ConfigMap": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			reason: "the node's config ConfigMap chains/test-chain-node0-config does not exist",
		},
		"no config ConfigMap, named": {
			cn:      citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) { cn.Spec.ConfigMapRef = "node0-v2" }),
			account: account(),
			reason:  "the node's config ConfigMap chains/node0-v2 does not exist",
		},
		"no config.toml": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: node + "-config"}, Data: map[string]string{"config.yaml": "a: b"}},
			reason: "ConfigMap test-chain-node0-config has no key config.toml",
		},
		"config.toml is not TOML": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: edit(citav1.ConsensusRaft, "[executor_evm]\n", "[executor_evm\n"),
			reason: "config.toml of ConfigMap test-chain-node0-config is not TOML: toml: line",
		},
		"raft's config for an overlord node": {
			cn: citaNode(citav1.ConsensusOverlord), account: account(),
			config: configMap(cloudConfigTOML(citav1.ConsensusRaft)),
			reason: "config.toml of ConfigMap test-chain-node0-config has no [consensus_overlord] section (spec.consensus is overlord; the config is for raft)",
		},
		"overlord's config for a raft node": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: configMap(cloudConfigTOML(citav1.ConsensusOverlord)),
			reason: "has no [consensus_raft] section (spec.consensus is raft; the config is for overlord)",
		},
		"no [network_zenoh]": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: configMap(strings.TrimPrefix(cloudConfigTOML(citav1.ConsensusRaft), networkSection)),
			reason: "has no [network_zenoh] section",
		},
		"no [storage_opendal] (an older storage)": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: configMap(strings.ReplaceAll(cloudConfigTOML(citav1.ConsensusRaft), "storage_opendal", "storage_rocksdb")),
			reason: "has no [storage_opendal] section",
		},
		"no [system_config]": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: edit(citav1.ConsensusRaft, "[system_config]\n", "[system]\n"),
			reason: "has no [system_config] section",
		},
		"executor_evm is not a table": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: configMap("executor_evm = 1\n" + strings.ReplaceAll(cloudConfigTOML(citav1.ConsensusRaft), "[executor_evm", "[executor_old")),
			reason: "config.toml of ConfigMap test-chain-node0-config: executor_evm is not a table",
		},
		"another node's config": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: configMap(strings.ReplaceAll(cloudConfigTOML(citav1.ConsensusRaft), `domain = "test-chain-node0"`, `domain = "test-chain-node1"`)),
			reason: `config.toml of ConfigMap test-chain-node0-config is not this node's: [network_zenoh] domain is "test-chain-node1", not the CitaNode's name "test-chain-node0"`,
		},
		"the bare domain, not the node's name": {
			cn: citaNode(citav1.ConsensusOverlord), account: account(),
			config: edit(citav1.ConsensusOverlord, "[consensus_overlord]\ndomain = \"test-chain-node0\"", "[consensus_overlord]\ndomain = \"node0\""),
			reason: `[consensus_overlord] domain is "node0", not the CitaNode's name "test-chain-node0"`,
		},
		"the controller without domain": {
			cn: citaNode(citav1.ConsensusRaft), account: account(),
			config: edit(citav1.ConsensusRaft, "[controller]\ndomain = \"test-chain-node0\"\n", "[controller]\n"),
			reason: `[controller] domain is "", not`,
		},
		"no account": {
			cn: citaNode(citav1.ConsensusRaft), config: configMap(cloudConfigTOML(citav1.ConsensusRaft)),
			reason: "the node's account ConfigMap chains/test-chain-node0-account does not exist",
		},
		// The operator reads no Secret (its RBAC grants none): a Secret
		// account's keys are left to the kubelet that mounts them.
		"a Secret account, not read": {
			cn:     citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) { cn.Spec.Account.Secret = "node0-keys" }),
			config: configMap(cloudConfigTOML(citav1.ConsensusRaft)),
		},
		"an account without node_address": {
			cn: citaNode(citav1.ConsensusRaft), config: configMap(cloudConfigTOML(citav1.ConsensusRaft)),
			account: without("node_address"),
			reason:  "the node's account ConfigMap test-chain-node0-account lacks node_address",
		},
		"an account without private_key": {
			cn: citaNode(citav1.ConsensusOverlord), config: configMap(cloudConfigTOML(citav1.ConsensusOverlord)),
			account: without("private_key"),
			reason:  "the node's account ConfigMap test-chain-node0-account lacks private_key",
		},
		"an account without the validator_address the config reads": {
			cn: citaNode(citav1.ConsensusRaft), config: configMap(cloudConfigTOML(citav1.ConsensusRaft)),
			account: without("validator_address", "private_key"),
			reason:  "lacks private_key, validator_address",
		},
		"an empty node_address": {
			cn: citaNode(citav1.ConsensusRaft), config: configMap(cloudConfigTOML(citav1.ConsensusRaft)),
			account: func() map[string][]byte { a := account(); a["node_address"] = nil; return a }(),
			reason:  "lacks node_address",
		},
		"a validator_address the config does not read from the account": {
			cn: citaNode(citav1.ConsensusRaft), account: without("validator_address"),
			config: configMap(strings.ReplaceAll(cloudConfigTOML(citav1.ConsensusRaft), `validator_address = "/mnt/validator_address"`, `validator_address = "validator_address"`)),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := CheckInputs(tc.cn, tc.config, tc.account)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("CheckInputs: %v", err)
				}
				return
			}
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(ie.Reason, tc.reason) {
				t.Fatalf("CheckInputs: %v\nwant an *InputError saying %q", err, tc.reason)
			}
		})
	}
}
