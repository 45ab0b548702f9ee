package datamove

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A checkpoint guards the node root while cloud-op rewrites its databases in place
// (recover, rollback, state-recover): a copy of the named directories inside the node root,
// on the same volume, with RocksDB table files hard-linked (RocksDB never rewrites an .sst,
// it writes new ones and deletes old ones, so a link keeps the old content at no cost) and
// every other file (MANIFEST, WAL logs, OPTIONS, CURRENT) copied.
//
// Layout: <node root>/.cita-node-job-checkpoint/{saved/<name>, trash/<name>, COMPLETE}.
// COMPLETE, written once the copy is durable, lists each guarded name and whether it existed;
// while it exists the checkpoint is the truth and the live directories are suspect.

const checkpointComplete = "COMPLETE"

// takeCheckpoint saves names of nodeRoot. The caller has run RecoverNodeRoot, so no earlier
// checkpoint is left.
func takeCheckpoint(ctx context.Context, nodeRoot string, names []string) error {
	ck := filepath.Join(nodeRoot, checkpointDir)
	saved := filepath.Join(ck, "saved")
	if err := os.MkdirAll(saved, 0o700); err != nil {
		return err
	}
	if _, err := copyTrees(ctx, nodeRoot, names, treeCopy{dstRoot: saved, linkSST: true}); err != nil {
		return errors.Join(fmt.Errorf("taking a checkpoint of %s: %w", nodeRoot, err), os.RemoveAll(ck))
	}
	if err := syncFS(saved); err != nil {
		return errors.Join(err, os.RemoveAll(ck))
	}
	var list strings.Builder
	for _, name := range names {
		there, err := exists(filepath.Join(nodeRoot, name))
		if err != nil {
			return errors.Join(err, os.RemoveAll(ck))
		}
		state := "absent"
		if there {
			state = "present"
		}
		fmt.Fprintf(&list, "%s %s\n", name, state)
	}
	if err := writeFileDurably(filepath.Join(ck, checkpointComplete), []byte(list.String())); err != nil {
		return errors.Join(err, os.RemoveAll(ck))
	}
	return nil
}

// rollbackCheckpoint puts a complete checkpoint back in place of what cloud-op left, then
// removes it. Every step checks what is done, so it can run again after a kill.
func rollbackCheckpoint(nodeRoot string) error {
	ck := filepath.Join(nodeRoot, checkpointDir)
	list, err := os.ReadFile(filepath.Join(ck, checkpointComplete))
	if err != nil {
		return err
	}
	trash := filepath.Join(ck, "trash")
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		name, state, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "/") || name == "" {
			return fmt.Errorf("checkpoint %s is damaged: line %q", ck, line)
		}
		live := filepath.Join(nodeRoot, name)
		saved := filepath.Join(ck, "saved", name)
		savedThere, err := exists(saved)
		if err != nil {
			return err
		}
		if state == "present" && !savedThere {
			continue // put back by an earlier run
		}
		if liveThere, err := exists(live); err != nil {
			return err
		} else if liveThere {
			if err := os.RemoveAll(filepath.Join(trash, name)); err != nil {
				return err
			}
			if err := os.Rename(live, filepath.Join(trash, name)); err != nil {
				return err
			}
		}
		if state == "present" {
			if err := os.Rename(saved, live); err != nil {
				return err
			}
		}
	}
	if err := fsyncDir(nodeRoot); err != nil {
		return err
	}
	return removeCheckpoint(nodeRoot)
}

// removeCheckpoint drops the checkpoint, COMPLETE first: a kill half-way leaves an
// incomplete checkpoint, which the next run merely deletes.
func removeCheckpoint(nodeRoot string) error {
	ck := filepath.Join(nodeRoot, checkpointDir)
	if err := os.Remove(filepath.Join(ck, checkpointComplete)); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := fsyncDir(ck); err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.RemoveAll(ck)
}

// RecoverNodeRoot finishes or undoes what a killed run left in nodeRoot, so every operation
// starts from the node's consistent data:
//   - a complete checkpoint means cloud-op may have half-rewritten the data: it is put back;
//   - an incomplete checkpoint means cloud-op never ran: it is deleted;
//   - a committed restore staging is swapped into place (it is whole and verified);
//   - an uncommitted one is deleted, the node's data never having been touched.
//
// It returns a note for the result when it had something to do.
func RecoverNodeRoot(nodeRoot string) (string, error) {
	var notes []string
	ck := filepath.Join(nodeRoot, checkpointDir)
	if there, err := exists(ck); err != nil {
		return "", err
	} else if there {
		complete, err := exists(filepath.Join(ck, checkpointComplete))
		if err != nil {
			return "", err
		}
		if complete {
			if err := rollbackCheckpoint(nodeRoot); err != nil {
				return "", fmt.Errorf("putting back the checkpoint an interrupted run left: %w", err)
			}
			notes = append(notes, "an interrupted earlier run's checkpoint was put back")
		} else if err := os.RemoveAll(ck); err != nil {
			return "", err
		}
	}
	staging := filepath.Join(nodeRoot, restoreStagingDir)
	if there, err := exists(staging); err != nil {
		return "", err
	} else if there {
		committed, err := exists(filepath.Join(staging, commitMarker))
		if err != nil {
			return "", err
		}
		if committed {
			if err := finishRestore(nodeRoot); err != nil {
				return "", fmt.Errorf("finishing the restore an interrupted run committed: %w", err)
			}
			notes = append(notes, "an interrupted earlier restore was completed")
		} else if err := os.RemoveAll(staging); err != nil {
			return "", err
		}
	}
	return joinWarnings(notes), nil
}
