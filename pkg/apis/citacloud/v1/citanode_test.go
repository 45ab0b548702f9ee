package v1_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// minimalCitaNode is what a user writes at least: the chain.
func minimalCitaNode(name string) map[string]any {
	cr := newCR("CitaNode", map[string]any{"chainName": "test-chain"})
	cr["metadata"].(map[string]any)["name"] = name
	return cr
}

// TestCitaNodeDefaults: the defaults are visible in the stored object.
func TestCitaNodeDefaults(t *testing.T) {
	obj := minimalCitaNode("test-chain-node0")
	if errs := loadCRD(t, "CitaNode").admit(obj, nil); len(errs) > 0 {
		t.Fatalf("rejected: %v", errs.ToAggregate())
	}
	s := spec(obj)
	for k, want := range map[string]any{"version": "v6.7.4", "consensus": "raft", "controller": "hsm", "desiredState": "Running", "healthCheck": true} {
		if s[k] != want {
			t.Errorf("spec.%s = %#v, want %#v", k, s[k], want)
		}
	}
	storage, _ := s["storage"].(map[string]any)
	if storage["size"] != "10Gi" || storage["accessMode"] != "ReadWriteOnce" {
		t.Errorf("spec.storage = %#v, want size 10Gi, accessMode ReadWriteOnce", storage)
	}
	if ii, _ := s["imageInfo"].(map[string]any); ii != nil && ii["pullPolicy"] != "IfNotPresent" {
		t.Errorf("spec.imageInfo = %#v", ii)
	}
	// The original CitaNode's storageSize was a byte count: it parses.
	obj = minimalCitaNode("test-chain-node0")
	spec(obj)["storage"] = map[string]any{"size": int64(21474836480)}
	if errs := loadCRD(t, "CitaNode").admit(obj, nil); len(errs) > 0 {
		t.Fatalf("a byte count as size: %v", errs.ToAggregate())
	}
}

// TestCitaNodeInvalid: each invalid CitaNode is refused naming the field.
func TestCitaNodeInvalid(t *testing.T) {
	set := func(k string, v any) func(map[string]any) { return func(o map[string]any) { spec(o)[k] = v } }
	cases := map[string]struct {
		mutate func(map[string]any)
		want   []string
	}{
		"no chain":          {func(o map[string]any) { delete(spec(o), "chainName") }, []string{"spec.chainName", "Required"}},
		"chain not a name":  {set("chainName", "Test_Chain"), []string{"spec.chainName"}},
		"unknown consensus": {set("consensus", "bft"), []string{"spec.consensus", "Unsupported value"}},
		"unknown state":     {set("desiredState", "Paused"), []string{"spec.desiredState", "Unsupported value"}},
		"bad version":       {set("version", "6.7"), []string{"spec.version"}},
		"both accounts":     {set("account", map[string]any{"configMap": "a", "secret": "b"}), []string{"spec.account", "not both"}},
		"peer with both":    {set("externalPeers", []any{map[string]any{"name": "p", "host": "h", "ip": "10.0.0.1"}}), []string{"spec.externalPeers[0]", "exactly one"}},
		"peer with neither": {set("externalPeers", []any{map[string]any{"name": "p"}}), []string{"spec.externalPeers[0]", "exactly one"}},
		"name too long": {func(o map[string]any) {
			o["metadata"].(map[string]any)["name"] = strings.Repeat("n", 53)
		}, []string{"metadata.name", "at most 52"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := minimalCitaNode("test-chain-node0")
			tc.mutate(obj)
			assertRejected(t, loadCRD(t, "CitaNode").admit(obj, nil), tc.want)
		})
	}
}

// TestCitaNodeImmutableFields: what a change would lose data over is
// refused; the rest may change (that is how a node is rolled or stopped).
func TestCitaNodeImmutableFields(t *testing.T) {
	v := loadCRD(t, "CitaNode")
	old := minimalCitaNode("test-chain-node0")
	if errs := v.admit(old, nil); len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	for field, value := range map[string]any{
		"chainName": "other-chain",
		"consensus": "overlord",
		"storage":   map[string]any{"size": "20Gi", "accessMode": "ReadWriteOnce"},
	} {
		changed := runtime.DeepCopyJSON(old)
		spec(changed)[field] = value
		assertRejected(t, v.admit(changed, old), []string{"spec." + field + " is immutable"})
	}
	for field, value := range map[string]any{"desiredState": "Stopped", "version": "v6.7.5", "controller": "plain", "healthCheck": false} {
		changed := runtime.DeepCopyJSON(old)
		spec(changed)[field] = value
		if errs := v.admit(changed, old); len(errs) > 0 {
			t.Errorf("changing spec.%s refused: %v", field, errs.ToAggregate())
		}
	}
}
