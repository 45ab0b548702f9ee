//go:build linux

package jobrunner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/datamove"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// TestFakeCloudOp runs the fake cloud-ops directly (no cluster, no root):
// the job binary's detection, the command lines each generation accepts,
// what they do to a node root, and the failure hook.
func TestFakeCloudOp(t *testing.T) {
	work := t.TempDir()
	jobBinary := filepath.Join(work, "job")
	if err := os.WriteFile(jobBinary, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(work, "calls")
	dirs, err := writeToolDirs(work, jobBinary, calls)
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dirs[jobargs.CloudOpCurrent], jobargs.BinaryName)); err != nil || target != jobBinary {
		t.Errorf("cita-node-job link -> %q, %v", target, err)
	}

	newNode := func(t *testing.T) (root, config, backup string) {
		dir := t.TempDir()
		root, backup = filepath.Join(dir, "node"), filepath.Join(dir, "backup")
		config = filepath.Join(dir, "config.toml")
		for rel, content := range map[string]string{
			"node/chain_data/000001.sst": "blocks", "node/data/000002.sst": "state",
			"node/raft-data-dir/wal": "raft", "node/kms.db": "keys", "config.toml": "",
		} {
			p := filepath.Join(dir, rel)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Mkdir(backup, 0o755); err != nil {
			t.Fatal(err)
		}
		return root, config, backup
	}
	run := func(gen string, args ...string) (int, string) {
		cmd := exec.Command(filepath.Join(dirs[gen], "cloud-op"), args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode(), stderr.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, stderr.String()
	}
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return string(b)
	}

	for _, gen := range []string{jobargs.CloudOpLegacy, jobargs.CloudOpCurrent} {
		t.Run(gen, func(t *testing.T) {
			t.Setenv("PATH", dirs[gen]+":"+os.Getenv("PATH"))
			c, err := datamove.DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil || c.Generation != gen {
				t.Fatalf("detected %+v, %v; want %s", c, err, gen)
			}

			root, config, backup := newNode(t)
			legacyTail := []string{"--crypto", "sm", "--consensus", "raft"}
			fallback := []string{"rollback", "7", "-n", root, "-c", config, "--clean"}
			snapshot := []string{"backup", "9", "-n", root, "-c", config, "-p", backup}
			if gen == jobargs.CloudOpLegacy {
				fallback = append(append([]string{"recover", "7", "--node-root", root, "--config-path", config}, legacyTail...), "--is-clear")
				snapshot = append([]string{"state-backup", "9", "--node-root", root, "--config-path", config, "--backup-path", backup}, legacyTail...)
			}
			if code, stderr := run(gen, fallback...); code != 0 {
				t.Fatalf("%v: exit %d: %s", fallback, code, stderr)
			}
			if got := read(filepath.Join(root, "chain_data", FallbackMarker)); got != "7\n" {
				t.Errorf("fallback marker %q", got)
			}
			if _, err := os.Stat(filepath.Join(root, "raft-data-dir")); !os.IsNotExist(err) {
				t.Errorf("consensus data kept by a clearing fallback: %v", err)
			}
			if code, stderr := run(gen, snapshot...); code != 0 {
				t.Fatalf("%v: exit %d: %s", snapshot, code, stderr)
			}
			if gen == jobargs.CloudOpCurrent {
				if got := read(filepath.Join(backup, "9", "data", "000002.sst")); got != "state" {
					t.Errorf("snapshot data %q", got)
				}
			} else {
				// state-backup writes one RocksDB, P/<h> itself: no chain_data, no data.
				if got := read(filepath.Join(backup, "9", "000003.sst")); got != "state of height 9\n" {
					t.Errorf("snapshot statedb %q", got)
				}
				for _, name := range []string{"chain_data", "data"} {
					if _, err := os.Lstat(filepath.Join(backup, "9", name)); !os.IsNotExist(err) {
						t.Errorf("legacy snapshot has %s: %v", name, err)
					}
				}
			}
			if gen == jobargs.CloudOpLegacy {
				// state-recover rolls chain_data back in place and replaces data/statedb by
				// P/<h>, keeping the rest of data.
				os.MkdirAll(filepath.Join(root, "data", "statedb"), 0o755)
				os.WriteFile(filepath.Join(root, "data", "statedb", "000099.sst"), []byte("newer state"), 0o644)
				restore := append([]string{"state-recover", "9", "--node-root", root, "--config-path", config, "--backup-path", backup}, legacyTail...)
				if code, stderr := run(gen, restore...); code != 0 {
					t.Fatalf("%v: exit %d: %s", restore, code, stderr)
				}
				for rel, want := range map[string]string{
					"chain_data/000001.sst": "blocks", "chain_data/" + FallbackMarker: "9\n",
					"data/000002.sst": "state", "data/statedb/000003.sst": "state of height 9\n", "data/statedb/000099.sst": "",
				} {
					if got := read(filepath.Join(root, rel)); got != want {
						t.Errorf("after state-recover, %s holds %q, want %q", rel, got, want)
					}
				}
				missing := append([]string(nil), restore...)
				missing[1] = "8"
				if code, stderr := run(gen, missing...); code != 101 || !strings.Contains(stderr, "No such file or directory") {
					t.Errorf("state-recover of a height without snapshot: exit %d, stderr %q", code, stderr)
				}
			}

			// The failure hook, and command lines the real parser refuses.
			failing := append([]string(nil), fallback...)
			failing[1] = strconv.FormatInt(FailHeight, 10)
			if code, stderr := run(gen, failing...); code != 1 || !strings.Contains(stderr, FailReason) {
				t.Errorf("at FailHeight: exit %d, stderr %q", code, stderr)
			}
			for _, bad := range [][]string{
				{fallback[0], "x", fallback[2], fallback[3]},
				append(append([]string(nil), fallback...), "--bogus"),
				{"rollback", "7", "-n", root, "-c", config, "-p", backup},
			} {
				if gen == jobargs.CloudOpLegacy && bad[0] == "rollback" {
					bad[0] = "recover"
					bad = append(bad, legacyTail...)
				}
				if code, _ := run(gen, bad...); code != 2 {
					t.Errorf("%v: exit %d, want 2", bad, code)
				}
			}
			// The other generation's command line is refused too.
			if gen == jobargs.CloudOpLegacy {
				if code, _ := run(gen, "rollback", "7", "-n", root, "-c", config); code != 2 {
					t.Errorf("legacy accepted rollback: exit %d", code)
				}
				if code, _ := run(gen, "recover", "7", "--node-root", root, "--config-path", config); code != 2 {
					t.Errorf("legacy accepted recover without crypto/consensus: exit %d", code)
				}
			} else if code, _ := run(gen, "state-recover", "9", "--node-root", root); code != 2 {
				t.Errorf("current accepted state-recover: exit %d", code)
			}
		})
	}
	got, err := readCloudOpCalls(calls)
	if err != nil || len(got) == 0 || got[0].Generation != jobargs.CloudOpLegacy || got[0].Args[0] != "recover" {
		t.Errorf("calls %+v, %v", got, err)
	}
}
