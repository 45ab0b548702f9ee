package datamove

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// What a fake cloud-op writes as the snapshot $SNAP (P/<h>). The current generation writes
// P/<h>/{chain_data,data} (v0.3.1 src/backup/mod.rs). The legacy one, state-backup v0.2.5
// (src/backup/state.rs:50-51), opens P/<h> itself as one RocksDB, the executor's statedb at
// the height:
//
//	let backup_path = backup_path.join(height.to_string());
//	let backup_rocks_db = Arc::new(RocksDB::open(backup_path.to_str().unwrap(), &config).unwrap());
//
// and state-recover (v0.2.5 src/recover/executor.rs:88-98, move_state) copies that directory,
// whatever it holds, over the node's <executor db_path>/statedb:
//
//	let snap_path = backup_path.join(height.to_string());
//	...
//	let state_path = executor_config.db_path + "/statedb";
//	let _ = remove_dir_all(&state_path);
//	...
//	copy_option.copy_inside = true;
//	copy_items(&[snap_path], state_path, &copy_option).unwrap();
const (
	writesWholeSnapshot = `mkdir -p "$SNAP/chain_data" "$SNAP/data/statedb"
echo blocks > "$SNAP/chain_data/000001.sst"; echo state > "$SNAP/data/statedb/000002.sst"`
	writesNoData = `mkdir -p "$SNAP/chain_data"; echo blocks > "$SNAP/chain_data/000001.sst"`
	// An empty chain_data: directories and an empty file only.
	writesEmptyChainData = `mkdir -p "$SNAP/chain_data/empty/deeper" "$SNAP/data/statedb"; : > "$SNAP/chain_data/LOCK"
echo state > "$SNAP/data/statedb/000002.sst"`
	writesDataAsFile = `mkdir -p "$SNAP/chain_data"; echo blocks > "$SNAP/chain_data/000001.sst"; echo state > "$SNAP/data"`
	writesDataAsLink = `mkdir -p "$SNAP/chain_data" "$SNAP.elsewhere"; echo blocks > "$SNAP/chain_data/000001.sst"
echo state > "$SNAP.elsewhere/000002.sst"; ln -s "$SNAP.elsewhere" "$SNAP/data"`

	// A legacy snapshot: one RocksDB, its LOCK empty.
	legacyWritesStateDB = `mkdir -p "$SNAP"; echo MANIFEST-000001 > "$SNAP/CURRENT"; echo manifest > "$SNAP/MANIFEST-000001"
echo state > "$SNAP/000003.sst"; : > "$SNAP/LOCK"`
)

// TestSnapshotChecksWhatCloudOpWrote: a current cloud-op that exits 0 has made a snapshot
// only if P/<h> holds both chain_data and data, each a directory with data in it; otherwise
// the reason names each thing missing, and no manifest makes the partial snapshot look whole.
func TestSnapshotChecksWhatCloudOpWrote(t *testing.T) {
	for _, gen := range []string{jobargs.CloudOpCurrent} {
		for name, tc := range map[string]struct {
			script string
			// wantErr: %[1]s is the cloud-op command, %[2]s the snapshot P/<h>.
			wantErr string
		}{
			"whole":              {script: writesWholeSnapshot},
			"no data":            {script: writesNoData, wantErr: "cloud-op %[1]s exited 0 but wrote no %[2]s/data"},
			"nothing":            {script: "exit 0", wantErr: "cloud-op %[1]s exited 0 but wrote no %[2]s/chain_data and wrote no %[2]s/data"},
			"empty chain_data":   {script: writesEmptyChainData, wantErr: "cloud-op %[1]s exited 0 but %[2]s/chain_data is empty"},
			"data is a file":     {script: writesDataAsFile, wantErr: "cloud-op %[1]s exited 0 but %[2]s/data is not a directory"},
			"data is a symlink":  {script: writesDataAsLink, wantErr: "cloud-op %[1]s exited 0 but %[2]s/data is not a directory"},
			"all of it is wrong": {script: `mkdir -p "$SNAP/chain_data"`, wantErr: "cloud-op %[1]s exited 0 but %[2]s/chain_data is empty and wrote no %[2]s/data"},
		} {
			t.Run(gen+"/"+name, func(t *testing.T) {
				snapshots := t.TempDir()
				snap := filepath.Join(snapshots, "100")
				t.Setenv("SNAP", snap)
				installFakeCloudOp(t, gen, tc.script)
				c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
				if err != nil {
					t.Fatal(err)
				}
				res, err := Snapshot(context.Background(), c, CloudOpParams{Height: 100, NodeRoot: makeCloudOpNode(t), ConfigPath: "/c", BackupPath: snapshots, Crypto: "sm", Consensus: "raft"})
				if tc.wantErr == "" {
					if err != nil {
						t.Fatalf("err = %v", err)
					}
					if res.Files != 2 || res.Checksum == "" {
						t.Errorf("result %+v, want 2 files and a checksum", res)
					}
					return
				}
				command := map[string]string{jobargs.CloudOpLegacy: "state-backup", jobargs.CloudOpCurrent: "backup"}[gen]
				if want := fmt.Sprintf(tc.wantErr, command, snap); err == nil || err.Error() != want {
					t.Fatalf("err = %v\nwant %s", err, want)
				}
				if _, err := os.Lstat(filepath.Join(snap, ManifestFile)); !os.IsNotExist(err) {
					t.Errorf("a manifest was written for a snapshot cloud-op did not make whole")
				}
				if res.Checksum != "" {
					t.Errorf("failed snapshot reports checksum %s", res.Checksum)
				}
			})
		}
	}
}

// TestLegacySnapshotChecksWhatCloudOpWrote: a state-backup that exits 0 has made a snapshot
// only if P/<h> is a directory with data in it; otherwise the reason names it. The manifest
// of a whole one goes beside it, P/<h>.checksums.sha256 listing "<h>/<file>", never inside,
// where state-recover would copy it into the node's statedb; a stale one from an earlier
// attempt does not survive a failed one.
func TestLegacySnapshotChecksWhatCloudOpWrote(t *testing.T) {
	for name, tc := range map[string]struct {
		script  string
		wantErr string // %[1]s is the snapshot P/<h>
	}{
		"whole":        {script: legacyWritesStateDB},
		"nothing":      {script: "exit 0", wantErr: "cloud-op state-backup exited 0 but wrote no %[1]s"},
		"empty":        {script: `mkdir -p "$SNAP/sub"; : > "$SNAP/LOCK"`, wantErr: "cloud-op state-backup exited 0 but %[1]s is empty"},
		"a file":       {script: `echo state > "$SNAP"`, wantErr: "cloud-op state-backup exited 0 but %[1]s is not a directory"},
		"a symlink":    {script: `mkdir -p "$SNAP.elsewhere"; echo state > "$SNAP.elsewhere/000003.sst"; ln -s "$SNAP.elsewhere" "$SNAP"`, wantErr: "cloud-op state-backup exited 0 but %[1]s is not a directory"},
		"old snapshot": {script: `echo state 2>/dev/null > "$SNAP/000003.sst"; exit 0`, wantErr: "cloud-op state-backup exited 0 but wrote no %[1]s"},
	} {
		t.Run(name, func(t *testing.T) {
			snapshots := t.TempDir()
			snap := filepath.Join(snapshots, "100")
			manifestPath := filepath.Join(snapshots, "100."+ManifestFile)
			// An earlier attempt's snapshot and manifest.
			writeTree(t, snapshots, map[string]string{"100/000003.sst": "older", "100." + ManifestFile: "stale"})
			t.Setenv("SNAP", snap)
			installFakeCloudOp(t, jobargs.CloudOpLegacy, tc.script)
			c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Snapshot(context.Background(), c, CloudOpParams{Height: 100, NodeRoot: makeCloudOpNode(t), ConfigPath: "/c", BackupPath: snapshots, Crypto: "sm", Consensus: "raft"})
			if tc.wantErr != "" {
				if want := fmt.Sprintf(tc.wantErr, snap); err == nil || err.Error() != want {
					t.Fatalf("err = %v\nwant %s", err, want)
				}
				if _, err := os.Lstat(manifestPath); !os.IsNotExist(err) {
					t.Errorf("a manifest is there for a snapshot cloud-op did not make whole: %v", err)
				}
				if res.Checksum != "" {
					t.Errorf("failed snapshot reports checksum %s", res.Checksum)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			entries, _ := os.ReadDir(snap)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if want := []string{"000003.sst", "CURRENT", "LOCK", "MANIFEST-000001"}; !slices.Equal(names, want) {
				t.Errorf("snapshot holds %q, want only what cloud-op wrote, %q", names, want)
			}
			m, sum, err := readManifestFile(manifestPath)
			if err != nil || len(m) != 4 {
				t.Fatalf("manifest %v, %v; want the 4 files", m, err)
			}
			if _, ok := m["100/000003.sst"]; !ok {
				t.Errorf("manifest %v does not list 100/000003.sst", m)
			}
			if res.Files != 4 || res.Bytes != int64(len("MANIFEST-000001\nmanifest\nstate\n")) || res.Checksum != sum {
				t.Errorf("result %+v, want 4 files, their bytes and checksum %s", res, sum)
			}
		})
	}
}

// TestSnapshotRestoreChecksTheSnapshotFirst: a current-generation snapshot without data, or
// with an empty chain_data or data, is refused before anything is staged, naming what it
// lacks, the node's data as it was. The snapshot gets a manifest of what it holds, so that
// Restore's verification alone would let it through.
func TestSnapshotRestoreChecksTheSnapshotFirst(t *testing.T) {
	for _, gen := range []string{jobargs.CloudOpCurrent} {
		for name, tc := range map[string]struct {
			files   map[string]string // relative path → content; a path ending in / is a directory
			wantErr string            // %[1]s is the snapshot P/<h>
		}{
			"no data": {files: map[string]string{"chain_data/000001.sst": "blocks"},
				wantErr: "snapshot %[1]s cannot be restored: no %[1]s/data; the node's data was not touched"},
			"empty chain_data": {files: map[string]string{"chain_data/empty/": "", "chain_data/LOCK": "", "data/statedb/000002.sst": "state"},
				wantErr: "snapshot %[1]s cannot be restored: %[1]s/chain_data is empty; the node's data was not touched"},
			"empty data": {files: map[string]string{"chain_data/000001.sst": "blocks", "data/statedb/": ""},
				wantErr: "snapshot %[1]s cannot be restored: %[1]s/data is empty; the node's data was not touched"},
			"no snapshot": {files: map[string]string{},
				wantErr: "snapshot %[1]s cannot be restored: no %[1]s/chain_data and no %[1]s/data; the node's data was not touched"},
		} {
			t.Run(gen+"/"+name, func(t *testing.T) {
				node := t.TempDir()
				makeNodeRoot(t, node, nodeRootSpec{smallFiles: 5, seed: 2})
				before := fingerprint(t, node)
				delete(before, ".")
				snapshots := t.TempDir()
				snap := filepath.Join(snapshots, "100")
				writeTree(t, snap, tc.files)
				if gen == jobargs.CloudOpCurrent && len(tc.files) > 0 {
					if _, _, err := writeSnapshotManifest(context.Background(), snap); err != nil {
						t.Fatal(err)
					}
				}
				argsLog := installFakeCloudOp(t, gen, "exit 0")
				c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
				if err != nil {
					t.Fatal(err)
				}
				_, err = SnapshotRestore(context.Background(), c, CloudOpParams{Height: 100, NodeRoot: node, ConfigPath: "/c", BackupPath: snapshots, Crypto: "sm", Consensus: "raft", DeleteConsensusData: true})
				if want := fmt.Sprintf(tc.wantErr, snap); err == nil || err.Error() != want {
					t.Fatalf("err = %v\nwant %s", err, want)
				}
				if readArgsLog(t, argsLog) != nil {
					t.Errorf("cloud-op ran on a snapshot that lacks chain state")
				}
				after := fingerprint(t, node)
				delete(after, ".")
				if d := diffFingerprints(before, after); d != "" {
					t.Errorf("node root changed:\n%s", d)
				}
			})
		}
	}
}

// TestLegacySnapshotRestoreChecksTheSnapshotFirst: a legacy snapshot P/<h> that is absent,
// not a directory or holds no data, or that does not match the manifest beside it, is refused
// before cloud-op runs, naming what is wrong, the node's data as it was.
func TestLegacySnapshotRestoreChecksTheSnapshotFirst(t *testing.T) {
	for name, tc := range map[string]struct {
		files   map[string]string // relative to P; a path ending in / is a directory
		damage  func(t *testing.T, snapshots string)
		wantErr string // %[1]s is the snapshot P/<h>, %[2]s its manifest
	}{
		"no snapshot": {wantErr: "snapshot %[1]s cannot be restored: no %[1]s; the node's data was not touched"},
		"empty": {files: map[string]string{"100/sub/": "", "100/LOCK": ""},
			wantErr: "snapshot %[1]s cannot be restored: %[1]s is empty; the node's data was not touched"},
		"a file": {files: map[string]string{"100": "state"},
			wantErr: "snapshot %[1]s cannot be restored: %[1]s is not a directory; the node's data was not touched"},
		"a file changed": {damage: func(t *testing.T, p string) { writeTree(t, p, map[string]string{"100/000043.sst": "other state"}) },
			wantErr: "snapshot %[1]s cannot be restored: it does not match its manifest %[2]s: 100/000043.sst is corrupted: its sha256 is "},
		"a file added": {damage: func(t *testing.T, p string) { writeTree(t, p, map[string]string{"100/000044.sst": "more"}) },
			wantErr: "snapshot %[1]s cannot be restored: it does not match its manifest %[2]s: 100/000044.sst is not in the manifest; the node's data was not touched"},
		"a file lost": {damage: func(t *testing.T, p string) { os.Remove(filepath.Join(p, "100", "MANIFEST-000001")) },
			wantErr: "snapshot %[1]s cannot be restored: it does not match its manifest %[2]s: 100/MANIFEST-000001 is listed in the manifest but missing (1 missing); the node's data was not touched"},
		"manifest unreadable": {damage: func(t *testing.T, p string) { writeTree(t, p, map[string]string{"100." + ManifestFile: "garbage\n"}) },
			wantErr: "snapshot %[1]s cannot be restored: %[2]s: line 1 is not \"<sha256>  <path>\"; the node's data was not touched"},
	} {
		t.Run(name, func(t *testing.T) {
			node := t.TempDir()
			makeNodeRoot(t, node, nodeRootSpec{smallFiles: 5, seed: 2})
			before := fingerprint(t, node)
			delete(before, ".")
			snapshots := t.TempDir()
			snap := filepath.Join(snapshots, "100")
			writeTree(t, snapshots, tc.files)
			if tc.damage != nil {
				makeLegacySnapshot(t, snapshots, 100)
				tc.damage(t, snapshots)
			}
			argsLog := installFakeCloudOp(t, jobargs.CloudOpLegacy, "exit 0")
			c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = SnapshotRestore(context.Background(), c, CloudOpParams{Height: 100, NodeRoot: node, ConfigPath: "/c", BackupPath: snapshots, Crypto: "sm", Consensus: "raft", DeleteConsensusData: true})
			want := fmt.Sprintf(tc.wantErr, snap, filepath.Join(snapshots, "100."+ManifestFile))
			if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "; the node's data was not touched") {
				t.Fatalf("err = %v\nwant %s", err, want)
			}
			if readArgsLog(t, argsLog) != nil {
				t.Errorf("cloud-op ran on a snapshot that is not whole")
			}
			after := fingerprint(t, node)
			delete(after, ".")
			if d := diffFingerprints(before, after); d != "" {
				t.Errorf("node root changed:\n%s", d)
			}
		})
	}
}

// TestLegacySnapshotRestoreVerifiesTheSnapshot: a legacy snapshot with its manifest is
// verified, and reported so with what it holds; one without (made before the manifest, or by
// the original operator) is restored unverified, with a warning saying so.
func TestLegacySnapshotRestoreVerifiesTheSnapshot(t *testing.T) {
	for name, withManifest := range map[string]bool{"with manifest": true, "without manifest": false} {
		t.Run(name, func(t *testing.T) {
			node := makeCloudOpNode(t)
			snapshots := t.TempDir()
			makeLegacySnapshot(t, snapshots, 100)
			manifestPath := filepath.Join(snapshots, "100."+ManifestFile)
			_, sum, err := readManifestFile(manifestPath)
			if err != nil {
				t.Fatal(err)
			}
			if !withManifest {
				os.Remove(manifestPath)
			}
			argsLog := installFakeCloudOp(t, jobargs.CloudOpLegacy, "exit 0")
			c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := SnapshotRestore(context.Background(), c, CloudOpParams{Height: 100, NodeRoot: node, ConfigPath: "/c", BackupPath: snapshots, Crypto: "sm", Consensus: "raft"})
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if readArgsLog(t, argsLog) == nil {
				t.Errorf("cloud-op state-recover did not run")
			}
			if res.Verified == nil || *res.Verified != withManifest {
				t.Errorf("verified %v, want %v", res.Verified, withManifest)
			}
			if withManifest {
				if res.Warning != "" || res.Files != 3 || res.Checksum != sum {
					t.Errorf("result %+v, want no warning, 3 files, checksum %s", res, sum)
				}
			} else if res.Warning != UnverifiedSnapshotWarning || res.Checksum != "" {
				t.Errorf("result %+v, want the warning %q and no checksum", res, UnverifiedSnapshotWarning)
			}
		})
	}
}

// writeTree writes files (relative path → content; a path ending in / is a directory) under
// root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if strings.HasSuffix(rel, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLegacySnapshotRestoreChecksWhatCloudOpLeft: a state-recover that exits 0 but leaves
// the node without data, or with an empty chain_data, fails naming it, and the checkpoint
// is put back as after a failed cloud-op.
func TestLegacySnapshotRestoreChecksWhatCloudOpLeft(t *testing.T) {
	for name, tc := range map[string]struct {
		script  string
		wantErr string // $NODE is the node root
	}{
		"rewrites the data": {script: `echo recovered > "$NODE_ROOT/data/statedb/CURRENT"`},
		"loses data": {script: `rm -rf "$NODE_ROOT/data"`,
			wantErr: "cloud-op state-recover exited 0 but left no $NODE/data (the node's data was put back as it was)"},
		"empties chain_data": {script: `rm -rf "$NODE_ROOT"/chain_data/*; touch "$NODE_ROOT/chain_data/LOCK"`,
			wantErr: "cloud-op state-recover exited 0 but $NODE/chain_data is empty (the node's data was put back as it was)"},
		"loses both": {script: `rm -rf "$NODE_ROOT/data" "$NODE_ROOT/chain_data"`,
			wantErr: "cloud-op state-recover exited 0 but left no $NODE/chain_data and left no $NODE/data (the node's data was put back as it was)"},
	} {
		t.Run(name, func(t *testing.T) {
			node := t.TempDir()
			makeNodeRoot(t, node, nodeRootSpec{smallFiles: 5, seed: 5})
			before := fingerprint(t, node)
			delete(before, ".")
			snapshots := t.TempDir()
			makeLegacySnapshot(t, snapshots, 100)
			t.Setenv("NODE_ROOT", node)
			installFakeCloudOp(t, jobargs.CloudOpLegacy, tc.script)
			c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = SnapshotRestore(context.Background(), c, CloudOpParams{Height: 100, NodeRoot: node, ConfigPath: "/c", BackupPath: snapshots, Crypto: "sm", Consensus: "raft"})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				if want := strings.ReplaceAll(tc.wantErr, "$NODE", node); err == nil || err.Error() != want {
					t.Fatalf("err = %v\nwant %s", err, want)
				}
				after := fingerprint(t, node)
				delete(after, ".")
				if d := diffFingerprints(before, after); d != "" {
					t.Errorf("node root after a state-recover that lost data differs from before:\n%s", d)
				}
			}
			if _, err := os.Lstat(filepath.Join(node, checkpointDir)); !os.IsNotExist(err) {
				t.Errorf("checkpoint left behind")
			}
		})
	}
}

// What cloud-op prints when it makes a snapshot, from its sources.
//
// Current generation: cita-cloud/cloud-op has no tag v6.7.4; its tag v0.3.1 is the commit
// "bump v6.7.4" (b7f52fd, the CITA-Cloud v6.7.4 dependencies), and src/backup/mod.rs:31-39
// there (unchanged on master) prints the node's height first and panics (exit 101) for a
// height the node is not above, before writing anything:
//
//	println!("current height: {}", current_height);
//	let backup_height = height.unwrap_or(current_height);
//	println!("backup height: {}", backup_height);
//	if backup_height >= current_height {
//	    panic!(
//	        "backup height({}) >= current height({})",
//	        backup_height, current_height
//	    );
//	}
//
// then "copy excutor state done!", "copy excutor chain_db done!", "copy storage chain_data
// done!", "backup done!". The image is built with a Rust ≥ 1.73 (rust:slim-bullseye, 2024),
// which puts a panic's message on the line after "thread 'main' panicked at <file>:<line>:<col>:".
//
// Legacy generation: v0.2.0 to v0.2.5 src/backup/state.rs (v0.2.5 lines 38-41 and 122)
// print no height at all; they return, exit 0 and nothing written, when the backup
// directory cannot be made, and a height the node does not have panics at an unwrap (v0.2.5
// line 59):
//
//	if let Err(e) = std::fs::create_dir_all(&backup_path) {
//	    println!(" backup dir create err {:?}", e);
//	    return;
//	}
//	...
//	println!("extract_backup finish.");
const (
	currentBacksUp = `echo "current height: 120"; echo "backup height: 100"
` + writesWholeSnapshot + `
echo "copy excutor state done!"; echo "copy excutor chain_db done!"; echo "copy storage chain_data done!"; echo "backup done!"`
	currentRefusesBackup = `echo "current height: $CURRENT"; echo "backup height: $TARGET"
echo "thread 'main' panicked at src/backup/mod.rs:35:9:" >&2
echo "backup height($TARGET) >= current height($CURRENT)" >&2
echo "note: run with RUST_BACKTRACE=1 environment variable to display a backtrace" >&2; exit 101`
	// Not what v0.3.1 does, but what its rollback came to do after it (ignore, exit 0):
	// the reason must still name both heights.
	currentIgnoresBackup = `echo "current height: $CURRENT"; echo "backup height: $TARGET"
echo "backup height($TARGET) >= current height($CURRENT), ignore backup"; exit 0`
	legacyBacksUp       = legacyWritesStateDB + `; echo "extract_backup finish."`
	legacyCannotMakeDir = `echo ' backup dir create err Os { code: 13, kind: PermissionDenied, message: "Permission denied" }'; exit 0`
	legacyNoSuchHeight  = "cat >&2 <<'PANIC'\nthread 'main' panicked at 'called `Option::unwrap()` on a `None` value', src/backup/state.rs:59:10\nPANIC\nexit 101"
)

// TestSnapshotReportsTheNodesHeight: the height cloud-op says the node is at is the
// snapshot's heightBefore; a snapshot height the node is not above fails naming both
// heights, whether cloud-op panics or exits 0 having written nothing. The legacy
// generation says no height, and none is reported.
func TestSnapshotReportsTheNodesHeight(t *testing.T) {
	for name, tc := range map[string]struct {
		gen, script     string
		current, target string
		wantBefore      int64  // -1: not reported
		wantErr         string // $SNAP is the snapshot P/<h>
	}{
		"current backs up":        {gen: jobargs.CloudOpCurrent, script: currentBacksUp, wantBefore: 120},
		"current below":           {gen: jobargs.CloudOpCurrent, script: currentRefusesBackup, current: "80", target: "100", wantBefore: 80, wantErr: "the node is at height 80, not above the snapshot's height 100: cloud-op backup made no snapshot"},
		"current at height":       {gen: jobargs.CloudOpCurrent, script: currentRefusesBackup, current: "100", target: "100", wantBefore: 100, wantErr: "the node is at height 100, not above the snapshot's height 100: cloud-op backup made no snapshot"},
		"current below, exits 0":  {gen: jobargs.CloudOpCurrent, script: currentIgnoresBackup, current: "80", target: "100", wantBefore: 80, wantErr: "cloud-op backup exited 0 but wrote no $SNAP/chain_data and wrote no $SNAP/data: the node is at height 80, not above the snapshot's height 100"},
		"current fails otherwise": {gen: jobargs.CloudOpCurrent, script: `echo "current height: 120"; echo "Error: disk full" >&2; exit 1`, wantBefore: 120, wantErr: "cloud-op backup failed (exit status 1): Error: disk full"},
		"legacy backs up":         {gen: jobargs.CloudOpLegacy, script: legacyBacksUp, wantBefore: -1},
		"legacy cannot make dir":  {gen: jobargs.CloudOpLegacy, script: legacyCannotMakeDir, wantBefore: -1, wantErr: "cloud-op state-backup exited 0 but wrote no $SNAP"},
		"legacy no such height":   {gen: jobargs.CloudOpLegacy, script: legacyNoSuchHeight, wantBefore: -1, wantErr: "cloud-op state-backup failed (exit status 101): thread 'main' panicked at 'called `Option::unwrap()` on a `None` value'"},
	} {
		t.Run(name, func(t *testing.T) {
			snapshots := t.TempDir()
			snap := filepath.Join(snapshots, "100")
			t.Setenv("SNAP", snap)
			t.Setenv("CURRENT", tc.current)
			t.Setenv("TARGET", tc.target)
			installFakeCloudOp(t, tc.gen, tc.script)
			c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Snapshot(context.Background(), c, CloudOpParams{Height: 100, NodeRoot: makeCloudOpNode(t), ConfigPath: "/c", BackupPath: snapshots, Crypto: "sm", Consensus: "raft"})
			wantErr := strings.ReplaceAll(tc.wantErr, "$SNAP", snap)
			switch {
			case wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
				t.Fatalf("err = %v\nwant it to say %s", err, wantErr)
			}
			switch {
			case tc.wantBefore < 0 && res.HeightBefore != nil:
				t.Errorf("heightBefore %d reported, cloud-op said none", *res.HeightBefore)
			case tc.wantBefore >= 0 && (res.HeightBefore == nil || *res.HeightBefore != tc.wantBefore):
				t.Errorf("heightBefore %v, want %d", res.HeightBefore, tc.wantBefore)
			}
			if wantErr != "" && res.Checksum != "" {
				t.Errorf("failed snapshot reports checksum %s", res.Checksum)
			}
		})
	}
}
