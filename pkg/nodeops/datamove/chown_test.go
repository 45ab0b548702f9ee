package datamove

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestChownNeverFollowsASymlinkOutOfTheTree(t *testing.T) {
	outside := t.TempDir()
	outFile, outDir := filepath.Join(outside, "secret"), filepath.Join(outside, "dir")
	os.WriteFile(outFile, []byte("x"), 0o600)
	os.Mkdir(outDir, 0o700)
	os.WriteFile(filepath.Join(outDir, "inner"), []byte("y"), 0o600)
	for _, p := range []string{outFile, outDir, filepath.Join(outDir, "inner")} {
		if err := os.Lchown(p, 4321, 4321); err != nil {
			t.Fatal(err)
		}
	}
	outsideBefore := fingerprint(t, outside)

	node := t.TempDir()
	makeNodeRoot(t, node, nodeRootSpec{smallFiles: 20, seed: 5})
	for link, target := range map[string]string{"link-to-file": outFile, "link-to-dir": outDir, "chain_data/rel-out": "../../" + filepath.Base(outside) + "/secret"} {
		if err := os.Symlink(target, filepath.Join(node, link)); err != nil {
			t.Fatal(err)
		}
	}
	var entries int64 // inodes: the second name of a hard-linked file has nothing left to change
	for rel, e := range fingerprint(t, node) {
		if e.LinkGroup == "" || e.LinkGroup == rel {
			entries++
		}
	}

	changed, err := Chown(context.Background(), node, 1000, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if changed != entries {
		t.Errorf("changed %d entries, the tree has %d", changed, entries)
	}
	for rel, e := range fingerprint(t, node) {
		if e.UID != 1000 || e.GID != 2000 {
			t.Errorf("%s owned by %d:%d after chown", rel, e.UID, e.GID)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(node, "link-to-file"), &st); err != nil || st.Uid != 1000 {
		t.Errorf("the symlink itself was not chowned: uid %d, %v", st.Uid, err)
	}
	if d := diffFingerprints(outsideBefore, fingerprint(t, outside)); d != "" {
		t.Errorf("chown changed files outside the node root through a symlink:\n%s", d)
	}

	again, err := Chown(context.Background(), node, 1000, 2000)
	if err != nil || again != 0 {
		t.Errorf("second chown changed %d entries (err %v), want 0", again, err)
	}
}
