package datamove

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// What cloud-op prints around a rollback, from its sources: v6.7.4
// (cita-cloud/cloud-op src/rollback/mod.rs: two println! lines, then "ignore
// rollback" and a return with exit 0 when the height is not below the
// node's) and the legacy generation (v0.2.5 src/recover/chain.rs: two
// println! lines, then a panic when it is not).
//
// "v6.7.4" is what that rollback came to be after the tag: the tag v0.3.1,
// the commit "bump v6.7.4" (b7f52fd) that images of CITA-Cloud v6.7.4 carry,
// panics instead (exit 101), src/rollback/mod.rs:31-38 at v0.3.1:
//
//	println!("current height: {}", current_height);
//	println!("rollback height: {}", height);
//	if height >= current_height {
//	    panic!(
//	        "rollback height({}) >= current height({})",
//	        height, current_height
//	    );
//	}
//
// and only the later commit 01aa2dd "ignore when rollback height >= current
// height" (src/rollback/mod.rs:33-39 there) prints and returns:
//
//	if height >= current_height {
//	    println!(
//	        "rollback height({}) >= current height({}), ignore rollback",
//	        height, current_height
//	    );
//	    return;
//	}
//
// Its image is built with a Rust ≥ 1.73, which puts the panic's message on
// the line after "thread 'main' panicked at <file>:<line>:<col>:".
const (
	currentRolls   = `echo "current height: 120"; echo "rollback height: 100"; exit 0`
	currentIgnores = `echo "current height: $CURRENT"; echo "rollback height: $TARGET"
echo "rollback height($TARGET) >= current height($CURRENT), ignore rollback"; exit 0`
	currentRefuses = `echo "current height: $CURRENT"; echo "rollback height: $TARGET"
echo "thread 'main' panicked at src/rollback/mod.rs:34:9:" >&2
echo "rollback height($TARGET) >= current height($CURRENT)" >&2
echo "note: run with RUST_BACKTRACE=1 environment variable to display a backtrace" >&2; exit 101`
	legacyRolls   = `echo "layer2 current height: 120"; echo "layer2 current height recover to: 100"; exit 0`
	legacyRefuses = `echo "layer2 current height: $CURRENT"; echo "layer2 current height recover to: $TARGET"
echo "thread 'main' panicked at 'recover height($TARGET) >= current height($CURRENT)', src/recover/chain.rs:39:9" >&2
echo "note: run with RUST_BACKTRACE=1 environment variable to display a backtrace" >&2; exit 101`
)

// TestFallbackReportsWhatCloudOpDid: a real rollback is reported with the
// height before; a height at the node's is a success that rolled nothing
// back; a height above it fails naming both heights, the data untouched;
// for both generations. A cloud-op that prints no height is reported as
// before (nothing known). A rollback that exits 0 but leaves the node
// without data, or with an empty chain_data, fails and is undone; a
// rollback cloud-op ignored is not held to that, having changed nothing.
func TestFallbackReportsWhatCloudOpDid(t *testing.T) {
	for name, tc := range map[string]struct {
		gen, script     string
		current, target string
		height          int64
		noData          bool  // the node has an empty data before the fallback
		wantBefore      int64 // -1: not reported
		wantRolledBack  *bool
		wantErr         string // $NODE is the node root
	}{
		"current rolls back": {gen: jobargs.CloudOpCurrent, script: currentRolls, height: 100, wantBefore: 120, wantRolledBack: ptrBool(true)},
		"current at height":  {gen: jobargs.CloudOpCurrent, script: currentIgnores, current: "100", target: "100", height: 100, wantBefore: 100, wantRolledBack: ptrBool(false)},
		"current below":      {gen: jobargs.CloudOpCurrent, script: currentIgnores, current: "80", target: "100", height: 100, wantBefore: 80, wantErr: "the node is at height 80, below the fallback's height 100: nothing was rolled back"},
		"v0.3.1 at height":   {gen: jobargs.CloudOpCurrent, script: currentRefuses, current: "100", target: "100", height: 100, wantBefore: 100, wantRolledBack: ptrBool(false)},
		"v0.3.1 below":       {gen: jobargs.CloudOpCurrent, script: currentRefuses, current: "80", target: "100", height: 100, wantBefore: 80, wantErr: "the node is at height 80, below the fallback's height 100: nothing was rolled back and the node's data is as it was"},
		"legacy rolls back":  {gen: jobargs.CloudOpLegacy, script: legacyRolls, height: 100, wantBefore: 120, wantRolledBack: ptrBool(true)},
		"legacy at height":   {gen: jobargs.CloudOpLegacy, script: legacyRefuses, current: "100", target: "100", height: 100, wantBefore: 100, wantRolledBack: ptrBool(false)},
		"legacy below":       {gen: jobargs.CloudOpLegacy, script: legacyRefuses, current: "80", target: "100", height: 100, wantBefore: 80, wantErr: "the node is at height 80, below the fallback's height 100"},
		"prints no height":   {gen: jobargs.CloudOpCurrent, script: "exit 0", height: 100, wantBefore: -1},
		"fails, no height":   {gen: jobargs.CloudOpCurrent, script: `echo "Error: storage open failed" >&2; exit 2`, height: 100, wantBefore: -1, wantErr: "Error: storage open failed"},
		"current loses data": {gen: jobargs.CloudOpCurrent, script: `rm -rf "$NODE_ROOT/data"; ` + currentRolls, height: 100, wantBefore: 120,
			wantErr: "cloud-op rollback exited 0 but left no $NODE/data (the node's data was put back as it was)"},
		"legacy empties chain_data": {gen: jobargs.CloudOpLegacy, script: `rm -rf "$NODE_ROOT"/chain_data/*; ` + legacyRolls, height: 100, wantBefore: 120,
			wantErr: "cloud-op recover exited 0 but $NODE/chain_data is empty (the node's data was put back as it was)"},
		"prints no height, loses data": {gen: jobargs.CloudOpCurrent, script: `rm -rf "$NODE_ROOT/data"`, height: 100, wantBefore: -1,
			wantErr: "cloud-op rollback exited 0 but left no $NODE/data (the node's data was put back as it was)"},
		"current at height, no data": {gen: jobargs.CloudOpCurrent, script: currentIgnores, current: "100", target: "100", height: 100, noData: true, wantBefore: 100, wantRolledBack: ptrBool(false)},
	} {
		t.Run(name, func(t *testing.T) {
			node := t.TempDir()
			makeNodeRoot(t, node, nodeRootSpec{smallFiles: 5, seed: 1})
			if tc.noData {
				if err := os.RemoveAll(filepath.Join(node, "data")); err != nil {
					t.Fatal(err)
				}
				os.Mkdir(filepath.Join(node, "data"), 0o755)
			}
			before := fingerprint(t, node)
			delete(before, ".")
			t.Setenv("CURRENT", tc.current)
			t.Setenv("TARGET", tc.target)
			t.Setenv("NODE_ROOT", node)
			installFakeCloudOp(t, tc.gen, tc.script)
			c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Fallback(context.Background(), c, CloudOpParams{Height: tc.height, NodeRoot: node, ConfigPath: "/c", Crypto: "sm", Consensus: "raft"})
			wantErr := strings.ReplaceAll(tc.wantErr, "$NODE", node)
			switch {
			case wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
				t.Fatalf("err = %v, want it to say %q", err, wantErr)
			}
			switch {
			case tc.wantBefore < 0 && res.HeightBefore != nil:
				t.Errorf("heightBefore %d reported, cloud-op said none", *res.HeightBefore)
			case tc.wantBefore >= 0 && (res.HeightBefore == nil || *res.HeightBefore != tc.wantBefore):
				t.Errorf("heightBefore %v, want %d", res.HeightBefore, tc.wantBefore)
			}
			if (tc.wantRolledBack == nil) != (res.RolledBack == nil) || (tc.wantRolledBack != nil && *tc.wantRolledBack != *res.RolledBack) {
				t.Errorf("rolledBack %v, want %v", res.RolledBack, tc.wantRolledBack)
			}
			after := fingerprint(t, node)
			delete(after, ".")
			if d := diffFingerprints(before, after); d != "" && (tc.wantRolledBack == nil || !*tc.wantRolledBack) {
				t.Errorf("node root changed although nothing was rolled back:\n%s", d)
			}
			if _, err := os.Lstat(filepath.Join(node, checkpointDir)); !os.IsNotExist(err) {
				t.Errorf("checkpoint left behind")
			}
		})
	}
}

func ptrBool(b bool) *bool { return &b }
