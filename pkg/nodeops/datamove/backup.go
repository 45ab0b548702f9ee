package datamove

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Backup copies the chain state (chain_data and, when present, data) of nodeRoot to the
// backup volume root dest and writes the manifest beside it, all in one pass over the data.
// Whatever an earlier, interrupted attempt left in dest is replaced; the manifest is removed
// first and written last, so dest holds a manifest only when it holds a whole backup.
func Backup(ctx context.Context, nodeRoot, dest string) (jobargs.Result, error) {
	var res jobargs.Result
	if note, err := RecoverNodeRoot(nodeRoot); err != nil {
		return res, err
	} else {
		res.Warning = note
	}
	if !isDir(filepath.Join(nodeRoot, ChainDataDir)) {
		return res, fmt.Errorf("node root %s has %w", nodeRoot, errNoChainData)
	}
	if err := os.Remove(filepath.Join(dest, ManifestFile)); err != nil && !os.IsNotExist(err) {
		return res, err
	}
	for _, name := range chainState {
		if err := os.RemoveAll(filepath.Join(dest, name)); err != nil {
			return res, fmt.Errorf("clearing an earlier attempt: %w", err)
		}
	}
	stats, err := copyTrees(ctx, nodeRoot, chainState, treeCopy{dstRoot: dest, hash: true})
	if err != nil {
		return res, fmt.Errorf("copying %s to %s: %w", nodeRoot, dest, err)
	}
	if err := syncFS(dest); err != nil {
		return res, err
	}
	sum, err := writeManifest(dest, stats.Digests)
	if err != nil {
		return res, err
	}
	res.Bytes, res.Files, res.Checksum = stats.Bytes, stats.Files, sum
	return res, nil
}

// writeSnapshotManifest hashes a snapshot cloud-op wrote (dir is P/<h>) and stores its
// manifest, so restoring it later is verified like a backup.
func writeSnapshotManifest(ctx context.Context, dir string) (treeStats, string, error) {
	stats, err := copyTrees(ctx, dir, chainState, treeCopy{hash: true})
	if err != nil {
		return stats, "", fmt.Errorf("hashing snapshot %s: %w", dir, err)
	}
	sum, err := writeManifest(dir, stats.Digests)
	return stats, sum, err
}

// legacySnapshotManifest is where the manifest of the legacy snapshot P/<h> goes: beside it,
// P/<h>.checksums.sha256, listing "<h>/<file>" (`cd P && sha256sum -c <h>.checksums.sha256`
// checks it). Not inside: P/<h> is one RocksDB, which state-recover copies, whatever it holds,
// over the node's statedb, and a file there would end up among the node's database files.
func legacySnapshotManifest(backupPath string, h int64) string {
	return filepath.Join(backupPath, strconv.FormatInt(h, 10)+"."+ManifestFile)
}

// writeLegacySnapshotManifest hashes the legacy snapshot P/<h> that cloud-op wrote and
// stores its manifest beside it, so restoring it later is verified.
func writeLegacySnapshotManifest(ctx context.Context, backupPath string, h int64) (treeStats, string, error) {
	name := strconv.FormatInt(h, 10)
	stats, err := copyTrees(ctx, backupPath, []string{name}, treeCopy{hash: true})
	if err != nil {
		return stats, "", fmt.Errorf("hashing snapshot %s: %w", filepath.Join(backupPath, name), err)
	}
	sum, err := writeManifestFile(legacySnapshotManifest(backupPath, h), stats.Digests)
	return stats, sum, err
}

// snapshotCheck is what verifying a legacy snapshot found: ok when a manifest was there and
// the snapshot matches it.
type snapshotCheck struct {
	ok       bool
	stats    treeStats
	checksum string
}

// verifyLegacySnapshot checks the legacy snapshot P/<h> against the manifest beside it: every
// file listed there with the same digest, and no other. No manifest is not an error.
func verifyLegacySnapshot(ctx context.Context, backupPath string, h int64) (snapshotCheck, error) {
	path := legacySnapshotManifest(backupPath, h)
	m, sum, err := readManifestFile(path)
	if err != nil || m == nil {
		return snapshotCheck{}, err
	}
	stats, err := copyTrees(ctx, backupPath, []string{strconv.FormatInt(h, 10)}, treeCopy{expect: m})
	if err != nil {
		if ctx.Err() != nil {
			return snapshotCheck{}, err // stopped, not a mismatch
		}
		return snapshotCheck{}, fmt.Errorf("it does not match its manifest %s: %w", path, err)
	}
	return snapshotCheck{ok: true, stats: stats, checksum: sum}, nil
}
