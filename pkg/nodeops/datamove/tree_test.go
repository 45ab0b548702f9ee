package datamove

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nodeRootSpec says how big a test node root is.
type nodeRootSpec struct {
	bigFile    int64 // bytes of chain_data/big.blob
	smallFiles int   // number of small files under data/state
	seed       uint64
}

// makeNodeRoot builds a node root with the cases that are hard to copy right: symlinks
// (relative, absolute, dangling, to a directory), hard links (within and across chain_data
// and data), empty directories, a read-only directory, 0600 files of another owner, odd
// times, a file name sha256sum must escape, one big file, many small ones; and beside the
// chain state what must never be copied: kms.db, raft-data-dir, overlord_wal, config.toml.
func makeNodeRoot(t testing.TB, root string, spec nodeRootSpec) {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{byte(spec.seed), byte(spec.seed >> 8)}))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, size int, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		b := make([]byte, size)
		fillRandom(rng, b)
		must(os.WriteFile(p, b, mode))
		must(os.Chmod(p, mode))
	}
	old := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)

	write("chain_data/000001.sst", 300_000, 0o644)
	write("chain_data/000002.sst", 5000, 0o644)
	write("chain_data/MANIFEST-000005", 1234, 0o644)
	write("chain_data/CURRENT", 16, 0o644)
	write("chain_data/OPTIONS-000007", 4000, 0o644)
	write("chain_data/LOG.old", 800, 0o644)
	must(os.Symlink("LOG.old", filepath.Join(root, "chain_data/LOG")))
	must(os.Symlink("/nonexistent/target", filepath.Join(root, "chain_data/dangling")))
	must(os.Symlink(filepath.Join(root, "kms.db"), filepath.Join(root, "chain_data/abs-link-to-kms")))
	must(os.Link(filepath.Join(root, "chain_data/000002.sst"), filepath.Join(root, "chain_data/000002.sst.hardlink")))
	write("chain_data/secret", 64, 0o600)
	must(os.Lchown(filepath.Join(root, "chain_data/secret"), 1234, 5678))
	must(os.Lchown(filepath.Join(root, "chain_data/LOG"), 1234, 5678))
	write("chain_data/we\\ird\nname", 10, 0o640)
	must(os.MkdirAll(filepath.Join(root, "chain_data/empty/deeper"), 0o755))
	write("chain_data/readonly/inside", 100, 0o444)
	must(os.Chmod(filepath.Join(root, "chain_data/readonly"), 0o555))
	if spec.bigFile > 0 {
		write("chain_data/big.blob", int(spec.bigFile), 0o644)
	}
	must(os.Chtimes(filepath.Join(root, "chain_data/000001.sst"), old, old))

	write("data/statedb/000010.sst", 70_000, 0o644)
	write("data/statedb/CURRENT", 16, 0o644)
	must(os.Link(filepath.Join(root, "chain_data/000001.sst"), filepath.Join(root, "data/statedb/linked-from-chain_data.sst")))
	must(os.Symlink("../statedb", filepath.Join(root, "data/dirlink")))
	must(os.Mkdir(filepath.Join(root, "data/empty"), 0o700))
	must(os.Chown(filepath.Join(root, "data/empty"), 1234, 1234))
	for i := range spec.smallFiles {
		write(fmt.Sprintf("data/state/%02x/%05d.blk", i%64, i), 100+rng.IntN(3000), 0o644)
	}

	write("kms.db", 4096, 0o600)
	write("node_key", 32, 0o600)
	write("config.toml", 200, 0o644)
	write("raft-data-dir/wal-0001", 5000, 0o644)
	write("overlord_wal/wal", 5000, 0o644)
	must(os.Chtimes(filepath.Join(root, "chain_data/empty"), old, old))
	must(os.Chtimes(filepath.Join(root, "data/empty"), old, old))
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

// entry is everything about one path that a faithful copy keeps.
type entry struct {
	Type       fs.FileMode
	Perm       uint32
	UID, GID   uint32
	Size       int64
	Mtime      int64
	SHA256     string
	LinkTarget string
	LinkGroup  string // first path (sorted) sharing this file's inode, for hard links
}

// fingerprint describes every path under root except this package's working directories.
func fingerprint(t testing.TB, root string) map[string]entry {
	t.Helper()
	fp := map[string]entry{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == restoreStagingDir || rel == checkpointDir {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{Type: fi.Mode().Type(), Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Size = fi.Size()
			e.SHA256 = fmt.Sprintf("%x", sha256.Sum256(b))
			inodes[st.Ino] = append(inodes[st.Ino], rel)
		case fi.Mode()&fs.ModeSymlink != 0:
			e.LinkTarget, _ = os.Readlink(p)
			e.Perm = 0 // a symlink's mode means nothing on Linux
		}
		fp[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rels := range inodes {
		slices.Sort(rels)
		for _, rel := range rels {
			e := fp[rel]
			e.LinkGroup = rels[0]
			fp[rel] = e
		}
	}
	return fp
}

// subtree keeps the entries under the given top-level names.
func subtree(fp map[string]entry, names ...string) map[string]entry {
	out := map[string]entry{}
	for rel, e := range fp {
		top, _, _ := strings.Cut(rel, "/")
		if slices.Contains(names, top) {
			out[rel] = e
		}
	}
	return out
}

func diffFingerprints(want, got map[string]entry) string {
	var diffs []string
	for rel, w := range want {
		g, ok := got[rel]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %q", rel))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%q: got %+v, want %+v", rel, g, w))
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %q", rel))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
	}
	return strings.Join(diffs, "\n")
}
