package datamove

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// RestoreOptions says what Restore puts where.
type RestoreOptions struct {
	// Source holds chain_data, data and (unless made by the original project) the manifest:
	// a backup volume root, or a current-generation snapshot P/<h>.
	Source string
	// NodeRoot is the node's data directory whose chain state is replaced.
	NodeRoot string
	// DeleteConsensusData removes the consensus WAL after the swap.
	DeleteConsensusData bool
}

// UnverifiedWarning is the Result warning of a restore from a backup without manifest.
const UnverifiedWarning = "the backup has no checksum manifest (made by the original operator): restored without verification"

// UnverifiedSnapshotWarning is the Result warning of a legacy snapshot restored without a
// manifest beside it (made by the original operator, or before this one wrote one).
const UnverifiedSnapshotWarning = "the snapshot has no checksum manifest (made by the original operator or an earlier version of this one): restored without verification"

// Restore replaces the chain state of the node root with the one in Source.
//
// The copy goes to a staging directory in the node root (same volume, so the swap is a
// rename), is verified against the manifest while it is copied, and is synced. Only then is
// a commit marker written and chain_data / data renamed into place, the old ones moved
// aside and removed last. Before the marker a kill leaves the node root untouched (the next
// run deletes the stale staging); after it the next run completes the swap, because the
// staged data is known whole and verified. Files take the owner of the node's current data,
// since a backup may come from another node running as another user.
func Restore(ctx context.Context, o RestoreOptions) (jobargs.Result, error) {
	var res jobargs.Result
	note, err := RecoverNodeRoot(o.NodeRoot)
	if err != nil {
		return res, err
	}
	if !isDir(filepath.Join(o.Source, ChainDataDir)) {
		return res, fmt.Errorf("source %s has %w", o.Source, errNoChainData)
	}
	m, checksum, err := readManifest(o.Source)
	if err != nil {
		return res, err
	}
	verified := m != nil
	res.Verified = &verified
	warnings := []string{note}
	if !verified {
		warnings = append(warnings, UnverifiedWarning)
	}
	res.Warning = joinWarnings(warnings)

	own, err := dataOwner(o.NodeRoot)
	if err != nil {
		return res, err
	}
	need, err := treeSize(o.Source, chainState, blockSize(o.NodeRoot))
	if err != nil {
		return res, err
	}
	free, err := freeBytes(o.NodeRoot)
	if err != nil {
		return res, err
	}
	if need > free {
		return res, fmt.Errorf("not enough free space on %s for the staged copy: need %s, %s free", o.NodeRoot, jobargs.HumanBytes(need), jobargs.HumanBytes(free))
	}

	staging := filepath.Join(o.NodeRoot, restoreStagingDir)
	newDir := filepath.Join(staging, "new")
	if err := os.MkdirAll(newDir, 0o700); err != nil {
		return res, err
	}
	stats, err := copyTrees(ctx, o.Source, chainState, treeCopy{dstRoot: newDir, expect: m, owner: own})
	if err != nil {
		// The live data was never touched; the staging goes, and the reason names the file.
		return res, errors.Join(fmt.Errorf("restoring from %s: %w", o.Source, err), os.RemoveAll(staging))
	}
	if err := syncFS(newDir); err != nil {
		return res, errors.Join(err, os.RemoveAll(staging))
	}
	var staged []string
	for _, name := range chainState {
		if isDir(filepath.Join(newDir, name)) {
			staged = append(staged, name)
		}
	}
	if err := writeFileDurably(filepath.Join(staging, commitMarker), []byte(strings.Join(staged, "\n")+"\n")); err != nil {
		return res, errors.Join(err, os.RemoveAll(staging))
	}
	if err := finishRestore(o.NodeRoot); err != nil {
		return res, err
	}
	if o.DeleteConsensusData {
		if err := deleteConsensusData(o.NodeRoot); err != nil {
			return res, err
		}
	}
	res.Bytes, res.Files, res.Checksum = stats.Bytes, stats.Files, checksum
	return res, nil
}

// commitMarker in the restore staging lists the chain-state directories the staged copy
// has; its presence means the staged copy is whole, verified and durable.
const commitMarker = "COMMIT"

// finishRestore swaps a committed staging into place and removes what it replaced. Each
// step checks what is already done, so it can run again after a kill at any point.
func finishRestore(nodeRoot string) error {
	staging := filepath.Join(nodeRoot, restoreStagingDir)
	list, err := os.ReadFile(filepath.Join(staging, commitMarker))
	if err != nil {
		return err
	}
	staged := strings.Fields(string(list))
	oldDir := filepath.Join(staging, "old")
	if err := os.MkdirAll(oldDir, 0o700); err != nil {
		return err
	}
	for _, name := range chainState {
		live := filepath.Join(nodeRoot, name)
		newer := filepath.Join(staging, "new", name)
		older := filepath.Join(oldDir, name)
		liveThere, err := exists(live)
		if err != nil {
			return err
		}
		if !slices.Contains(staged, name) {
			// The source has no such directory: the node must not keep an old one that
			// does not belong to the restored chain state.
			if liveThere {
				if err := os.Rename(live, older); err != nil {
					return err
				}
			}
			continue
		}
		newThere, err := exists(newer)
		if err != nil {
			return err
		}
		if !newThere {
			continue // swapped by an earlier run
		}
		if liveThere {
			if err := os.Rename(live, older); err != nil {
				return err
			}
		}
		if err := os.Rename(newer, live); err != nil {
			return err
		}
		testPoint("swapped " + name)
	}
	if err := fsyncDir(nodeRoot); err != nil {
		return err
	}
	// The marker goes before the old data: from here a kill leaves only garbage behind.
	if err := os.Remove(filepath.Join(staging, commitMarker)); err != nil {
		return err
	}
	if err := fsyncDir(staging); err != nil {
		return err
	}
	return os.RemoveAll(staging)
}

func deleteConsensusData(nodeRoot string) error {
	for _, name := range consensusData {
		if err := os.RemoveAll(filepath.Join(nodeRoot, name)); err != nil {
			return fmt.Errorf("deleting consensus data: %w", err)
		}
	}
	return fsyncDir(nodeRoot)
}

// dataOwner is the owner restored files get: that of the node's chain_data, or of the node
// root when the node has no chain_data yet.
func dataOwner(nodeRoot string) (*owner, error) {
	fi, err := os.Lstat(filepath.Join(nodeRoot, ChainDataDir))
	if err != nil {
		if fi, err = os.Stat(nodeRoot); err != nil {
			return nil, err
		}
	}
	st := statT(fi)
	return &owner{uid: int(st.Uid), gid: int(st.Gid)}, nil
}

func joinWarnings(ws []string) string {
	var out []string
	for _, w := range ws {
		if w != "" {
			out = append(out, w)
		}
	}
	return strings.Join(out, "; ")
}
