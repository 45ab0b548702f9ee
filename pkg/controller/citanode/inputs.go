package citanode

import (
	"fmt"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	corev1 "k8s.io/api/core/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

// InputError says what keeps a CitaNode from running as it is: its spec,
// its config.toml or its account. Nothing retrying fixes it; the user does.
type InputError struct{ Reason string }

func (e *InputError) Error() string { return e.Reason }

func inputError(format string, args ...any) error {
	return &InputError{Reason: fmt.Sprintf(format, args...)}
}

// ConfigKey is the key of config.toml in the node's config ConfigMap.
const ConfigKey = "config.toml"

// The account keys every node needs whatever its config says: its address,
// and the private key the controller (and overlord) read with -p.
var requiredAccountKeys = []string{"node_address", "private_key"}

// CheckInputs checks that what the node's containers will read fits the
// CitaNode before the node is started from it: config is its config
// ConfigMap (nil: it does not exist), accountData the data of its account
// ConfigMap or Secret (nil: it does not exist). An *InputError names what
// is wrong.
//
// It checks what would otherwise show only as a crash-looping pod: that
// config.toml is TOML with the sections the chosen services read, that it
// was generated for this node (cloud-config writes the node's name,
// <chain>-<domain>, as every service's domain), and that the account has
// the files the services read from /mnt.
func CheckInputs(cn *citav1.CitaNode, config *corev1.ConfigMap, accountData map[string][]byte) error {
	s := withDefaults(&cn.Spec)
	domain, ok := strings.CutPrefix(cn.Name, s.ChainName+"-")
	if !ok || domain == "" {
		return inputError("the CitaNode's name %q is not <chainName>-<domain> (chainName %q): cloud-config names a node so, and its config.toml says so", cn.Name, s.ChainName)
	}
	if consensusService(s.Consensus) == "" {
		return inputError("spec.consensus %q: not raft or overlord", s.Consensus)
	}
	doc, err := parseConfig(cn, config)
	if err != nil {
		return err
	}
	cmName := ConfigMapName(cn)
	sections := []string{"network_zenoh", consensusService(s.Consensus), "executor_evm", "storage_opendal", "controller", "genesis_block", "system_config"}
	for _, sec := range sections {
		if _, ok := doc[sec]; !ok {
			return inputError("config.toml of ConfigMap %s has no [%s] section%s", cmName, sec, consensusHint(s.Consensus, sec, doc))
		}
		if _, ok := doc[sec].(map[string]any); !ok {
			return inputError("config.toml of ConfigMap %s: %s is not a table", cmName, sec)
		}
	}
	for _, sec := range sections {
		if !domainSections[sec] {
			continue
		}
		if d, _ := doc[sec].(map[string]any)["domain"].(string); d != cn.Name {
			return inputError("config.toml of ConfigMap %s is not this node's: [%s] domain is %q, not the CitaNode's name %q (cloud-config writes <chain>-<domain>)", cmName, sec, d, cn.Name)
		}
	}
	return checkAccount(cn, doc, accountData)
}

func parseConfig(cn *citav1.CitaNode, config *corev1.ConfigMap) (map[string]any, error) {
	name := ConfigMapName(cn)
	if config == nil {
		return nil, inputError("the node's config ConfigMap %s/%s does not exist", cn.Namespace, name)
	}
	text, ok := config.Data[ConfigKey]
	if !ok {
		b, inBinary := config.BinaryData[ConfigKey]
		if !inBinary {
			return nil, inputError("ConfigMap %s has no key %s", name, ConfigKey)
		}
		text = string(b)
	}
	var doc map[string]any
	if _, err := toml.Decode(text, &doc); err != nil {
		return nil, inputError("config.toml of ConfigMap %s is not TOML: %v", name, err)
	}
	return doc, nil
}

// consensusHint says which consensus the config was written for when it is
// the other one.
func consensusHint(kind citav1.ConsensusKind, missing string, doc map[string]any) string {
	if missing != consensusService(kind) {
		return ""
	}
	for _, other := range []citav1.ConsensusKind{citav1.ConsensusRaft, citav1.ConsensusOverlord} {
		if _, ok := doc[consensusService(other)]; ok && other != kind {
			return fmt.Sprintf(" (spec.consensus is %s; the config is for %s)", kind, other)
		}
	}
	return ""
}

// domainSections are the sections cloud-config writes the node's name in,
// as domain (update_node.rs: real_domain); raft's has none.
var domainSections = map[string]bool{"network_zenoh": true, "consensus_overlord": true, "executor_evm": true, "storage_opendal": true, "controller": true}

// accountPaths are the config.toml keys cloud-config points at files of
// the account (/mnt/node_address, /mnt/validator_address).
var accountPaths = map[string][]string{
	"network_zenoh":  {"node_address", "validator_address"},
	"consensus_raft": {"node_addr"},
	"controller":     {"node_address", "validator_address"},
}

// checkAccount: the account must hold node_address and private_key, and
// every file the config reads under /mnt.
func checkAccount(cn *citav1.CitaNode, doc map[string]any, data map[string][]byte) error {
	a := AccountOf(cn)
	if data == nil && a.Kind == "Secret" {
		// The operator reads no Secret: a Secret account's keys are the
		// kubelet's to find when it mounts them.
		return nil
	}
	if data == nil {
		return inputError("the node's account %s %s/%s does not exist", a.Kind, cn.Namespace, a.Name)
	}
	need := slices.Clone(requiredAccountKeys)
	for sec, keys := range accountPaths {
		table, _ := doc[sec].(map[string]any)
		for _, k := range keys {
			p, _ := table[k].(string)
			if file, ok := strings.CutPrefix(p, accountMountPath+"/"); ok && !slices.Contains(need, file) {
				need = append(need, file)
			}
		}
	}
	slices.Sort(need)
	var missing []string
	for _, k := range need {
		if len(data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return inputError("the node's account %s lacks %s", a, strings.Join(missing, ", "))
	}
	return nil
}
