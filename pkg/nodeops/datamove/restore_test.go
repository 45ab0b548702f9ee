package datamove

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// restoreFixture is a backup of node A and a node B, with different data owned by another
// user, onto which it is restored.
type restoreFixture struct {
	backup, node string
	backupFP     map[string]entry // of the backup's chain state
	nodeFP       map[string]entry // of B before the restore
}

func newRestoreFixture(t *testing.T, smallFiles int) restoreFixture {
	t.Helper()
	root := t.TempDir()
	a, b, backup := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "backup")
	for _, d := range []string{a, b, backup} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	makeNodeRoot(t, a, nodeRootSpec{smallFiles: smallFiles, seed: 1})
	makeNodeRoot(t, b, nodeRootSpec{smallFiles: 10, seed: 2})
	if _, err := Chown(context.Background(), b, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := Backup(context.Background(), a, backup); err != nil {
		t.Fatal(err)
	}
	f := restoreFixture{backup: backup, node: b, backupFP: subtree(fingerprint(t, backup), chainState...), nodeFP: fingerprint(t, b)}
	delete(f.nodeFP, ".")
	return f
}

// assertNodeUnchanged checks that every path of the node root is as before (the node root
// directory's own mtime aside: working directories came and went in it).
func (f restoreFixture) assertNodeUnchanged(t *testing.T) {
	t.Helper()
	got := fingerprint(t, f.node)
	delete(got, ".")
	if d := diffFingerprints(f.nodeFP, got); d != "" {
		t.Errorf("node root changed:\n%s", d)
	}
}

// assertRestored checks that the node's chain state is the backup's, owned as B's data was,
// and that everything else is as before.
func (f restoreFixture) assertRestored(t *testing.T, consensusDeleted bool) {
	t.Helper()
	got := fingerprint(t, f.node)
	want := map[string]entry{}
	for rel, e := range f.backupFP {
		e.UID, e.GID = 1000, 1000
		want[rel] = e
	}
	if d := diffFingerprints(want, subtree(got, chainState...)); d != "" {
		t.Errorf("restored chain state differs from the backup:\n%s", d)
	}
	keep := []string{"kms.db", "node_key", "config.toml"}
	if !consensusDeleted {
		keep = append(keep, consensusData...)
	}
	if d := diffFingerprints(subtree(f.nodeFP, keep...), subtree(got, keep...)); d != "" {
		t.Errorf("restore touched what makes the node itself:\n%s", d)
	}
	for _, name := range consensusData {
		_, err := os.Lstat(filepath.Join(f.node, name))
		if consensusDeleted != os.IsNotExist(err) {
			t.Errorf("%s: exists=%v, want deleted=%v", name, err == nil, consensusDeleted)
		}
	}
	for _, wd := range []string{restoreStagingDir, checkpointDir} {
		if _, err := os.Lstat(filepath.Join(f.node, wd)); !os.IsNotExist(err) {
			t.Errorf("%s left behind", wd)
		}
	}
}

func TestRestore(t *testing.T) {
	for name, deleteConsensus := range map[string]bool{"keep consensus data": false, "delete consensus data": true} {
		t.Run(name, func(t *testing.T) {
			f := newRestoreFixture(t, 200)
			res, err := Restore(context.Background(), RestoreOptions{Source: f.backup, NodeRoot: f.node, DeleteConsensusData: deleteConsensus})
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if res.Verified == nil || !*res.Verified || res.Warning != "" {
				t.Errorf("result verified=%v warning=%q, want verified, no warning", res.Verified, res.Warning)
			}
			if _, sum, _ := readManifest(f.backup); res.Checksum != sum || sum == "" {
				t.Errorf("result checksum %q, want the backup manifest's %q", res.Checksum, sum)
			}
			f.assertRestored(t, deleteConsensus)
		})
	}
}

func TestRestoreWithoutManifestIsUnverified(t *testing.T) {
	f := newRestoreFixture(t, 10)
	if err := os.Remove(filepath.Join(f.backup, ManifestFile)); err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), RestoreOptions{Source: f.backup, NodeRoot: f.node})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.Verified == nil || *res.Verified || res.Warning != UnverifiedWarning {
		t.Errorf("result verified=%v warning=%q, want unverified with %q", res.Verified, res.Warning, UnverifiedWarning)
	}
	f.assertRestored(t, false)
}

func TestRestoreOfCorruptBackupFailsNamingTheFile(t *testing.T) {
	tests := map[string]struct {
		damage  func(t *testing.T, backup string)
		wantErr string
	}{
		"one byte flipped": {
			damage: func(t *testing.T, backup string) {
				p := filepath.Join(backup, "data/state/07/00007.blk")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 1
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "data/state/07/00007.blk is corrupted",
		},
		"file missing": {
			damage:  func(t *testing.T, backup string) { os.Remove(filepath.Join(backup, "chain_data/CURRENT")) },
			wantErr: "chain_data/CURRENT is listed in the manifest but missing",
		},
		"file added": {
			damage: func(t *testing.T, backup string) {
				os.WriteFile(filepath.Join(backup, "chain_data/intruder"), []byte("x"), 0o644)
			},
			wantErr: "chain_data/intruder is not in the manifest",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newRestoreFixture(t, 100)
			tc.damage(t, f.backup)
			_, err := Restore(context.Background(), RestoreOptions{Source: f.backup, NodeRoot: f.node, DeleteConsensusData: true})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Restore: err = %v, want it to contain %q", err, tc.wantErr)
			}
			f.assertNodeUnchanged(t)
			if _, err := os.Lstat(filepath.Join(f.node, restoreStagingDir)); !os.IsNotExist(err) {
				t.Errorf("failed restore left its staging behind")
			}
		})
	}
}

func TestRestoreKilledMidCopyLeavesOldDataAndRerunSucceeds(t *testing.T) {
	f := newRestoreFixture(t, 2000)
	child := startHelper(t, "restore-slowly:"+f.backup+"|"+f.node)
	staged := filepath.Join(f.node, restoreStagingDir, "new", "data", "state")
	waitFor(t, "the child to be copying", func() bool {
		entries, _ := os.ReadDir(staged)
		return len(entries) >= 32
	})
	killHelper(t, child)

	if _, err := os.Lstat(filepath.Join(f.node, restoreStagingDir, commitMarker)); !os.IsNotExist(err) {
		t.Fatalf("the kill came too late to be mid-copy: the restore was committed")
	}
	f.assertNodeUnchanged(t)

	if _, err := Restore(context.Background(), RestoreOptions{Source: f.backup, NodeRoot: f.node}); err != nil {
		t.Fatalf("rerun after the kill: %v", err)
	}
	f.assertRestored(t, false)
}

func TestRestoreKilledMidSwapIsCompletedByTheNextRun(t *testing.T) {
	f := newRestoreFixture(t, 50)
	child := startHelper(t, "restore-die-after-first-swap:"+f.backup+"|"+f.node)
	child.Wait()
	if ws := child.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() {
		t.Fatalf("helper was not killed at the swap: %v", child.ProcessState)
	}
	// chain_data is the new one, data still the old one: the next run must roll forward.
	note, err := RecoverNodeRoot(f.node)
	if err != nil {
		t.Fatalf("RecoverNodeRoot: %v", err)
	}
	if !strings.Contains(note, "completed") {
		t.Errorf("note %q does not say the interrupted restore was completed", note)
	}
	f.assertRestored(t, false)
}

func TestRestoreChecksFreeSpaceFirst(t *testing.T) {
	f := newRestoreFixture(t, 300) // ≈1.9 MiB on disk, in 4 KiB blocks
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (need root and CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", small).Run() })
	// A node whose volume is half full: its own 1 MiB of chain state, and a backup that
	// does not fit beside it.
	makeSmallNode(t, small)
	before := fingerprint(t, small)
	delete(before, ".")

	_, err := Restore(context.Background(), RestoreOptions{Source: f.backup, NodeRoot: small})
	if err == nil || !strings.Contains(err.Error(), "not enough free space on "+small) {
		t.Fatalf("Restore onto a full volume: err = %v, want a free-space error", err)
	}
	after := fingerprint(t, small)
	delete(after, ".")
	if d := diffFingerprints(before, after); d != "" {
		t.Errorf("node root changed:\n%s", d)
	}
}

func makeSmallNode(t *testing.T, root string) {
	t.Helper()
	for rel, size := range map[string]int{"chain_data/000001.sst": 1 << 20, "data/CURRENT": 16, "kms.db": 100} {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRestoreRunningOutOfSpaceMidCopyLeavesOldData(t *testing.T) {
	f := newRestoreFixture(t, 300)
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (need root and CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", small).Run() })
	makeSmallNode(t, small)
	before := fingerprint(t, small)
	delete(before, ".")

	// Something else fills the volume once the copy has begun (the free-space check passed).
	var fill sync.Once
	testPoint = func(point string) {
		if point == "file copied" {
			fill.Do(func() {
				f, _ := os.Create(filepath.Join(small, "filler"))
				f.Write(make([]byte, 8<<20)) // fails with ENOSPC once the volume is full
				f.Close()
			})
		}
	}
	t.Cleanup(func() { testPoint = func(string) {} })

	_, err := Restore(context.Background(), RestoreOptions{Source: f.backup, NodeRoot: small})
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Restore onto a volume filling up: err = %v, want ENOSPC", err)
	}
	os.Remove(filepath.Join(small, "filler"))
	after := fingerprint(t, small)
	delete(after, ".")
	if d := diffFingerprints(before, after); d != "" {
		t.Errorf("node root changed:\n%s", d)
	}
}
