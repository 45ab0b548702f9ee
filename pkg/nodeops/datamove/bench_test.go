package datamove

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The Go benchmarks measure the job's own code on a 128 MiB tree in the test's temp dir;
// `make bench-data` (test/benchdata) compares it with cp, sync and sha256sum on ≈2 GiB, warm
// and cold.

func benchTree(b *testing.B) string {
	b.Helper()
	node := filepath.Join(b.TempDir(), "node")
	makeNodeRoot(b, node, nodeRootSpec{bigFile: 0, smallFiles: 2000, seed: 9})
	buf := make([]byte, 16<<20)
	for i := range 7 { // 7 × 16 MiB SST-like files
		p := filepath.Join(node, "chain_data", fmt.Sprintf("%06d.sst", 100+i))
		buf[0] = byte(i)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return node
}

func BenchmarkBackup(b *testing.B) {
	node := benchTree(b)
	size, err := treeSize(node, chainState, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	dest := filepath.Join(b.TempDir(), "backup")
	os.Mkdir(dest, 0o755)
	for b.Loop() {
		if _, err := Backup(context.Background(), node, dest); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRestore(b *testing.B) {
	node := benchTree(b)
	backup := filepath.Join(b.TempDir(), "backup")
	os.Mkdir(backup, 0o755)
	if _, err := Backup(context.Background(), node, backup); err != nil {
		b.Fatal(err)
	}
	size, _ := treeSize(backup, chainState, 1)
	b.SetBytes(size)
	target := filepath.Join(b.TempDir(), "target")
	os.Mkdir(target, 0o755)
	for b.Loop() {
		// Each iteration replaces the chain state the previous one restored.
		if _, err := Restore(context.Background(), RestoreOptions{Source: backup, NodeRoot: target}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckpoint(b *testing.B) {
	node := benchTree(b)
	for b.Loop() {
		if err := takeCheckpoint(context.Background(), node, guardedNames); err != nil {
			b.Fatal(err)
		}
		if err := removeCheckpoint(node); err != nil {
			b.Fatal(err)
		}
	}
}
