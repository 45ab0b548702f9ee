package datamove

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBackupEqualsCpAAndManifestMatches(t *testing.T) {
	root := t.TempDir()
	node, dest, ref := filepath.Join(root, "node"), filepath.Join(root, "backup"), filepath.Join(root, "cp-a")
	for _, d := range []string{node, dest, ref} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	makeNodeRoot(t, node, nodeRootSpec{bigFile: 100 << 20, smallFiles: 3000, seed: 1})

	res, err := Backup(context.Background(), node, dest)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(node, "chain_data"), filepath.Join(node, "data"), ref).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}

	got, want := fingerprint(t, dest), fingerprint(t, ref)
	delete(got, ManifestFile)
	delete(got, ".")
	delete(want, ".")
	if d := diffFingerprints(want, got); d != "" {
		t.Errorf("backup differs from cp -a:\n%s", d)
	}
	for _, notCopied := range []string{"kms.db", "node_key", "config.toml", "raft-data-dir", "overlord_wal"} {
		if _, err := os.Lstat(filepath.Join(dest, notCopied)); !os.IsNotExist(err) {
			t.Errorf("%s was copied into the backup (err %v)", notCopied, err)
		}
	}

	// The manifest is what sha256sum would say, in its format, for every regular file.
	cmd := exec.Command("sha256sum", "--check", "--strict", "--quiet", ManifestFile)
	cmd.Dir = dest
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check of the manifest: %v: %s", err, out)
	}
	m, _, err := readManifest(dest)
	if err != nil {
		t.Fatal(err)
	}
	var regular, bytes int64
	seen := map[string]bool{}
	for rel, e := range want {
		if e.Type.IsRegular() {
			regular++
			if _, ok := m[rel]; !ok {
				t.Errorf("manifest lacks %q", rel)
			}
			if !seen[e.LinkGroup] {
				seen[e.LinkGroup] = true
				bytes += e.Size
			}
		}
	}
	if int64(len(m)) != regular || res.Files != regular || res.Bytes != bytes {
		t.Errorf("manifest has %d entries, result %d files %d bytes; want %d files, %d bytes", len(m), res.Files, res.Bytes, regular, bytes)
	}
	manifestBytes, _ := os.ReadFile(filepath.Join(dest, ManifestFile))
	if res.Checksum != checksumOf(manifestBytes) || !strings.HasPrefix(res.Checksum, "sha256:") {
		t.Errorf("result checksum %q is not the manifest's", res.Checksum)
	}

	// A second run into the same volume (a retried Job) gives the same backup.
	res2, err := Backup(context.Background(), node, dest)
	if err != nil {
		t.Fatalf("second Backup: %v", err)
	}
	if res2.Checksum != res.Checksum {
		t.Errorf("second backup checksum %s != first %s", res2.Checksum, res.Checksum)
	}
}

func TestBackupWithoutChainDataFails(t *testing.T) {
	node, dest := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(node, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Backup(context.Background(), node, dest)
	if err == nil || !strings.Contains(err.Error(), "has no chain_data") {
		t.Fatalf("Backup of a node root without chain_data: err = %v, want one naming chain_data", err)
	}
	if _, err := os.Stat(filepath.Join(dest, ManifestFile)); !os.IsNotExist(err) {
		t.Errorf("a failed backup left a manifest")
	}
}

func TestManifestRoundTripsOddNames(t *testing.T) {
	m := manifest{"chain_data/a": {1}, "data/b\\c\nd\re": {2}, "data/ e ": {3}}
	got, err := parseManifest(m.encode())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(m) {
		t.Fatalf("parsed %d entries, want %d", len(got), len(m))
	}
	for k, v := range m {
		if got[k] != v {
			t.Errorf("%q: got %x, want %x", k, got[k], v)
		}
	}
	if _, err := parseManifest([]byte("00  ../../etc/passwd\n")); err == nil {
		t.Errorf("a manifest line with a short digest was accepted")
	}
	if _, err := parseManifest([]byte(strings.Repeat("0", 64) + "  ../../etc/passwd\n")); err == nil {
		t.Errorf("a manifest path leaving the backup was accepted")
	}
}
