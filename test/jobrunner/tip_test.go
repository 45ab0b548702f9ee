//go:build linux

package jobrunner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/datamove"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// TestFakeCloudOpAtTheTip: the fake refuses a rollback to the node's own
// height or above it as each generation of the real one does, and the job
// binary reads it: at TipHeight a success that rolled nothing back, at
// TipHeight+1 a failure naming both heights; the node root untouched.
func TestFakeCloudOpAtTheTip(t *testing.T) {
	work := t.TempDir()
	jobBinary := filepath.Join(work, "job")
	if err := os.WriteFile(jobBinary, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dirs, err := writeToolDirs(work, jobBinary, filepath.Join(work, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	for _, gen := range []string{jobargs.CloudOpLegacy, jobargs.CloudOpCurrent} {
		t.Run(gen, func(t *testing.T) {
			t.Setenv("PATH", dirs[gen]+":"+os.Getenv("PATH"))
			c, err := datamove.DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			root, config := filepath.Join(dir, "node"), filepath.Join(dir, "config.toml")
			for rel, content := range map[string]string{"node/chain_data/000001.sst": "blocks", "node/data/000002.sst": "state", "config.toml": ""} {
				p := filepath.Join(dir, rel)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			params := func(h int64) datamove.CloudOpParams {
				return datamove.CloudOpParams{Height: h, NodeRoot: root, ConfigPath: config, Crypto: "sm", Consensus: "raft"}
			}
			res, err := datamove.Fallback(context.Background(), c, params(TipHeight))
			if err != nil || res.HeightBefore == nil || *res.HeightBefore != TipHeight || res.RolledBack == nil || *res.RolledBack {
				t.Fatalf("at the tip: %+v, %v", res, err)
			}
			res, err = datamove.Fallback(context.Background(), c, params(TipHeight+1))
			if err == nil || !strings.Contains(err.Error(), "the node is at height 500000000, below the fallback's height 500000001") {
				t.Fatalf("above the tip: %+v, %v", res, err)
			}
			if _, err := os.Stat(filepath.Join(root, "chain_data", FallbackMarker)); !os.IsNotExist(err) {
				t.Fatalf("the fake rolled back at or above the tip: %v", err)
			}
			res, err = datamove.Fallback(context.Background(), c, params(7))
			if err != nil || res.HeightBefore == nil || *res.HeightBefore != 107 || res.RolledBack == nil || !*res.RolledBack {
				t.Fatalf("below the tip: %+v, %v", res, err)
			}
		})
	}
}
