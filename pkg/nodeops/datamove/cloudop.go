package datamove

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// CloudOp is the cloud-op binary of the job image and the generation it speaks
// (jobargs.CloudOpLegacy or jobargs.CloudOpCurrent).
type CloudOp struct {
	Path       string
	Generation string
	// Log receives cloud-op's output as it runs (the Job's log); nil discards it.
	Log io.Writer
}

// DetectCloudOp runs `cloud-op --help` and tells the generation from the subcommands it
// lists: the current one has `rollback`, the legacy one `recover` / `state-recover`. Asking
// the binary, rather than trusting an image tag, keeps working with retagged or custom images.
func DetectCloudOp(ctx context.Context, path string, log io.Writer) (*CloudOp, error) {
	resolved, err := exec.LookPath(path)
	if err != nil {
		return nil, fmt.Errorf("cloud-op not found in the job image: %w", err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, resolved, "--help")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("cloud-op --help: %w: %s", err, tail(out.Bytes(), 3))
	}
	subcommands := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			subcommands[f[0]] = true
		}
	}
	gen := ""
	switch {
	case subcommands["rollback"]:
		gen = jobargs.CloudOpCurrent
	case subcommands["recover"] || subcommands["state-recover"]:
		gen = jobargs.CloudOpLegacy
	default:
		return nil, fmt.Errorf("cannot tell cloud-op's generation: its --help lists neither rollback nor recover: %s", tail(out.Bytes(), 3))
	}
	return &CloudOp{Path: resolved, Generation: gen, Log: log}, nil
}

// CloudOpParams are the operands of one cloud-op run.
type CloudOpParams struct {
	Height     int64
	NodeRoot   string
	ConfigPath string
	// BackupPath is the snapshot directory P (snapshots are P/<h>).
	BackupPath string
	// Crypto and Consensus: the legacy generation needs them.
	Crypto, Consensus   string
	DeleteConsensusData bool
}

// errNoCloudOpCommand: the current generation has no snapshot-restore; its snapshot is
// restored like a backup.
var errNoCloudOpCommand = errors.New("no cloud-op command for this operation in this generation")

// cloudOpArgs is the exact command line of DESIGN §4's table for op in generation gen.
func cloudOpArgs(gen string, op jobargs.Op, p CloudOpParams) ([]string, error) {
	h := strconv.FormatInt(p.Height, 10)
	switch gen {
	case jobargs.CloudOpLegacy:
		if p.Crypto == "" || p.Consensus == "" {
			return nil, fmt.Errorf("the legacy cloud-op needs the node's crypto and consensus, which the operator could not tell from its images (crypto %q, consensus %q)", p.Crypto, p.Consensus)
		}
		var args []string
		switch op {
		case jobargs.OpFallback:
			args = []string{"recover", h, "--node-root", p.NodeRoot, "--config-path", p.ConfigPath}
		case jobargs.OpSnapshot:
			args = []string{"state-backup", h, "--node-root", p.NodeRoot, "--config-path", p.ConfigPath, "--backup-path", p.BackupPath}
		case jobargs.OpSnapshotRestore:
			args = []string{"state-recover", h, "--node-root", p.NodeRoot, "--config-path", p.ConfigPath, "--backup-path", p.BackupPath}
		default:
			return nil, fmt.Errorf("%s does not use cloud-op", op)
		}
		args = append(args, "--crypto", p.Crypto, "--consensus", p.Consensus)
		if p.DeleteConsensusData && op != jobargs.OpSnapshot {
			args = append(args, "--is-clear")
		}
		return args, nil
	case jobargs.CloudOpCurrent:
		switch op {
		case jobargs.OpFallback:
			args := []string{"rollback", h, "-n", p.NodeRoot, "-c", p.ConfigPath}
			if p.DeleteConsensusData {
				args = append(args, "--clean")
			}
			return args, nil
		case jobargs.OpSnapshot:
			return []string{"backup", h, "-n", p.NodeRoot, "-c", p.ConfigPath, "-p", p.BackupPath}, nil
		case jobargs.OpSnapshotRestore:
			return nil, errNoCloudOpCommand
		}
		return nil, fmt.Errorf("%s does not use cloud-op", op)
	}
	return nil, fmt.Errorf("unknown cloud-op generation %q", gen)
}

// run runs cloud-op; a failure's reason ends with the last lines cloud-op wrote to stderr,
// which is where it says what went wrong.
// Every line cloud-op writes, on stdout or stderr, is also passed to said, if set, one at a
// time.
func (c *CloudOp) run(ctx context.Context, args []string, said func(line string)) error {
	var stderr tailBuffer
	cmd := exec.CommandContext(ctx, c.Path, args...)
	log := c.Log
	if log == nil {
		log = io.Discard
	}
	cmd.Stdout, cmd.Stderr = log, io.MultiWriter(log, &stderr)
	if said != nil {
		// Both streams are copied concurrently: one line at a time reaches said.
		var mu sync.Mutex
		lines := &lineWriter{line: func(l string) { mu.Lock(); defer mu.Unlock(); said(l) }}
		errLines := &lineWriter{line: lines.line}
		defer lines.flush()
		defer errLines.flush()
		cmd.Stdout, cmd.Stderr = io.MultiWriter(log, lines), io.MultiWriter(log, &stderr, errLines)
	}
	// On cancellation (the Job is being stopped) let cloud-op close its databases first.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	fmt.Fprintf(log, "running %s %s\n", filepath.Base(c.Path), strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		reason := tail(stderr.Bytes(), 3)
		if reason == "" {
			reason = "no output on stderr"
		}
		return fmt.Errorf("cloud-op %s failed (%v): %s", args[0], err, reason)
	}
	return nil
}

// tailBuffer keeps the last few KiB written to it: cloud-op may log a lot, and only the end
// explains a failure.
type tailBuffer struct{ b []byte }

const tailKeep = 4096

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*tailKeep {
		t.b = append(t.b[:0], t.b[len(t.b)-tailKeep:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	if len(t.b) > tailKeep {
		return t.b[len(t.b)-tailKeep:]
	}
	return t.b
}

// tail joins the last n non-empty lines of out into one line of at most 1 KiB.
func tail(out []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, " | ")
	if len(s) > 1024 {
		s = "…" + s[len(s)-1024:]
	}
	return s
}

// guardedNames are the directories a checkpoint saves around an in-place cloud-op run: the
// chain state, and the consensus WAL, which --is-clear / --clean delete and which a failed run
// must give back too. The WAL is small; guarding it always keeps the promise simple: after a
// failure the node root is what it was.
var guardedNames = append(append([]string(nil), chainState...), consensusData...)

// runInPlace runs a cloud-op command that rewrites the node's databases, guarded by a
// checkpoint: put back if cloud-op fails, if verify (when set) finds that what cloud-op left
// is wrong although it exited 0, or if this process is stopped; removed after success.
// A SIGKILL leaves the checkpoint complete, and the next run's RecoverNodeRoot puts it back.
func (c *CloudOp) runInPlace(ctx context.Context, nodeRoot string, args []string, said func(line string), verify func() error) error {
	if err := takeCheckpoint(ctx, nodeRoot, guardedNames); err != nil {
		return err
	}
	err := c.run(ctx, args, said)
	if err == nil && verify != nil {
		err = verify()
	}
	if err != nil {
		if rerr := rollbackCheckpoint(nodeRoot); rerr != nil {
			return fmt.Errorf("%w; putting the checkpoint back also failed (it stays in %s for the next run): %v", err, filepath.Join(nodeRoot, checkpointDir), rerr)
		}
		return fmt.Errorf("%w (the node's data was put back as it was)", err)
	}
	return removeCheckpoint(nodeRoot)
}

// leftChainState is the check after an in-place cloud-op command exited 0: the node root
// still holds chain_data and data with data in them.
func leftChainState(nodeRoot, command string) error {
	gaps, err := chainStateGaps(nodeRoot)
	if err != nil {
		return fmt.Errorf("checking what cloud-op %s left: %w", command, err)
	}
	if len(gaps) > 0 {
		return fmt.Errorf("cloud-op %s exited 0 but %s", command, describeGaps(gaps, "left no"))
	}
	return nil
}

// Fallback rolls the node's chain state back to p.Height, and reports what cloud-op says it
// did: a cloud-op that finds the node at or below the height changes nothing (later v6.7.x
// builds say so and exit 0; v0.3.1, the v6.7.4 tag, and the legacy generation panic first). At the height, that is a success that rolled
// nothing back; below it, a failure naming both heights. A rollback that leaves the node
// without chain_data or data, or with one of them empty, fails and is undone.
func Fallback(ctx context.Context, c *CloudOp, p CloudOpParams) (jobargs.Result, error) {
	res, args, err := c.prepare(jobargs.OpFallback, p)
	if err != nil {
		return res, err
	}
	var said heightReport
	err = c.runInPlace(ctx, p.NodeRoot, args, said.line, func() error {
		if said.ignored {
			return nil // cloud-op said it changed nothing
		}
		return leftChainState(p.NodeRoot, args[0])
	})
	if said.current == nil {
		return res, err
	}
	current := *said.current
	res.HeightBefore = &current
	refused := said.ignored || (err != nil && said.panicRefused)
	switch {
	case refused && current == p.Height:
		res.RolledBack = new(bool)
		return res, nil
	case refused:
		return res, fmt.Errorf("the node is at height %d, below the fallback's height %d: nothing was rolled back and the node's data is as it was", current, p.Height)
	case err != nil:
		return res, err
	}
	rolledBack := true
	res.RolledBack = &rolledBack
	return res, nil
}

// heightReport reads what cloud-op prints around a rollback or a snapshot: the node's
// current height (v6.7.x rollback and backup: "current height: N"; legacy recover: "layer2
// current height: N"; legacy state-backup prints none), and whether it refused a height at
// or above it (rollback after v0.3.1: "rollback height(H) >= current height(N), ignore
// rollback" and exit 0; v0.3.1 rollback: a panic "rollback height(H) >= current
// height(N)"; legacy recover: a panic "recover height(H) >= current height(N)"; v6.7.x
// backup: a panic "backup height(H) >= current height(N)").
type heightReport struct {
	current *int64
	ignored bool
	// panicRefused: a rollback or recover panicked at the height check, before changing
	// anything.
	panicRefused  bool
	backupRefused bool
}

// lineWriter passes what is written to it to line, a line at a time.
type lineWriter struct {
	partial []byte
	line    func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > tailKeep { // a line that long says nothing read here
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = nil
	}
}

func (r *heightReport) line(l string) {
	l = strings.TrimSpace(l)
	for _, prefix := range []string{"current height:", "layer2 current height:"} {
		if v, ok := strings.CutPrefix(l, prefix); ok && r.current == nil {
			if h, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				r.current = &h
			}
		}
	}
	switch {
	case strings.Contains(l, ">= current height(") && strings.HasSuffix(l, "ignore rollback"):
		r.ignored = true
	case (strings.Contains(l, "recover height(") || strings.Contains(l, "rollback height(")) && strings.Contains(l, ">= current height("):
		r.panicRefused = true
	case strings.Contains(l, "backup height(") && strings.Contains(l, ">= current height("):
		r.backupRefused = true
	}
}

// prepare is what every cloud-op operation does first: clean up after a
// killed earlier run, check the node root has chain data, build the command
// line of the image's cloud-op generation.
func (c *CloudOp) prepare(op jobargs.Op, p CloudOpParams) (jobargs.Result, []string, error) {
	res := jobargs.Result{CloudOpGeneration: c.Generation, BlockHeight: p.Height}
	note, err := RecoverNodeRoot(p.NodeRoot)
	res.Warning = note
	if err != nil {
		return res, nil, err
	}
	if !isDir(filepath.Join(p.NodeRoot, ChainDataDir)) {
		return res, nil, fmt.Errorf("node root %s has %w", p.NodeRoot, errNoChainData)
	}
	args, err := cloudOpArgs(c.Generation, op, p)
	return res, args, err
}

// Snapshot has cloud-op write the chain state at p.Height to P/<h>, checks what it wrote,
// then hashes it into a manifest so that restoring it is verified. What a snapshot is
// differs by generation: the current one writes chain_data and data, which must both hold
// data (chainStateGaps), and the manifest goes inside P/<h> as in a backup; the legacy one
// writes the executor's statedb as one RocksDB directory P/<h>, which must hold data, and
// its manifest goes beside it (legacySnapshotManifest). The node's height is reported where
// cloud-op says it (the current generation does, the legacy one does not); a height the
// node is not above fails naming both heights.
func Snapshot(ctx context.Context, c *CloudOp, p CloudOpParams) (jobargs.Result, error) {
	res, args, err := c.prepare(jobargs.OpSnapshot, p)
	if err != nil {
		return res, err
	}
	dir := snapshotDir(p.BackupPath, p.Height)
	legacy := c.Generation == jobargs.CloudOpLegacy
	// An earlier attempt's manifest must not vouch for this one, nor its partial snapshot
	// mix with it.
	if legacy {
		if err := os.Remove(legacySnapshotManifest(p.BackupPath, p.Height)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return res, err
	}
	var said heightReport
	runErr := c.run(ctx, args, said.line)
	// The current generation snapshots only a height below the node's.
	notBelow := ""
	if said.current != nil {
		current := *said.current
		res.HeightBefore = &current
		if current <= p.Height {
			notBelow = fmt.Sprintf("the node is at height %d, not above the snapshot's height %d", current, p.Height)
		}
	}
	if runErr != nil {
		if said.backupRefused && notBelow != "" {
			return res, fmt.Errorf("%s: cloud-op %s made no snapshot", notBelow, args[0])
		}
		return res, runErr
	}
	// cloud-op's exit status is not enough: a snapshot is only what it wrote.
	if gaps, err := snapshotGaps(c.Generation, dir); err != nil {
		return res, err
	} else if len(gaps) > 0 {
		reason := fmt.Sprintf("cloud-op %s exited 0 but %s", args[0], describeGaps(gaps, "wrote no"))
		if notBelow != "" {
			reason += ": " + notBelow
		}
		return res, errors.New(reason)
	}
	if err := syncFS(dir); err != nil {
		return res, err
	}
	var (
		stats treeStats
		sum   string
	)
	if legacy {
		stats, sum, err = writeLegacySnapshotManifest(ctx, p.BackupPath, p.Height)
	} else {
		stats, sum, err = writeSnapshotManifest(ctx, dir)
	}
	if err != nil {
		return res, err
	}
	res.Bytes, res.Files, res.Checksum = stats.Bytes, stats.Files, sum
	return res, nil
}

// SnapshotRestore restores the snapshot P/<h> (P = p.BackupPath) into the node root: with the
// legacy generation through cloud-op's state-recover, guarded by a checkpoint; with the
// current one, which has no such command, as a verified Restore of P/<h>. Either way the
// snapshot must hold what its generation writes (snapshotGaps) before anything is restored:
// Restore accepts a source without data (a backup of a node that had none) and then leaves
// the node without data too, and a manifest only vouches for the files it lists. A legacy
// snapshot is verified against the manifest beside it before state-recover copies it; one
// without (made by the original operator, or before this one wrote it) is restored
// unverified with a warning, as Restore does a backup without a manifest.
func SnapshotRestore(ctx context.Context, c *CloudOp, p CloudOpParams) (jobargs.Result, error) {
	res := jobargs.Result{CloudOpGeneration: c.Generation, BlockHeight: p.Height}
	args, err := cloudOpArgs(c.Generation, jobargs.OpSnapshotRestore, p)
	viaRestore := errors.Is(err, errNoCloudOpCommand)
	if err != nil && !viaRestore {
		return res, err
	}
	note, err := RecoverNodeRoot(p.NodeRoot)
	res.Warning = note
	if err != nil {
		return res, err
	}
	snap := snapshotDir(p.BackupPath, p.Height)
	if gaps, err := snapshotGaps(c.Generation, snap); err != nil {
		return res, err
	} else if len(gaps) > 0 {
		return res, fmt.Errorf("snapshot %s cannot be restored: %s; the node's data was not touched", snap, describeGaps(gaps, "no"))
	}
	if !viaRestore {
		verified, err := verifyLegacySnapshot(ctx, p.BackupPath, p.Height)
		if err != nil {
			return res, fmt.Errorf("snapshot %s cannot be restored: %v; the node's data was not touched", snap, err)
		}
		res.Verified = &verified.ok
		if verified.ok {
			res.Bytes, res.Files, res.Checksum = verified.stats.Bytes, verified.stats.Files, verified.checksum
		} else {
			res.Warning = joinWarnings([]string{note, UnverifiedSnapshotWarning})
		}
	}
	if viaRestore {
		restored, err := Restore(ctx, RestoreOptions{Source: snap, NodeRoot: p.NodeRoot, DeleteConsensusData: p.DeleteConsensusData})
		restored.CloudOpGeneration, restored.BlockHeight = res.CloudOpGeneration, res.BlockHeight
		restored.Warning = joinWarnings([]string{note, restored.Warning})
		return restored, err
	}
	return res, c.runInPlace(ctx, p.NodeRoot, args, nil, func() error { return leftChainState(p.NodeRoot, args[0]) })
}

// snapshotDir is where both generations put the snapshot at height h.
func snapshotDir(backupPath string, h int64) string {
	return filepath.Join(backupPath, strconv.FormatInt(h, 10))
}

// snapshotGaps says what the snapshot dir (P/<h>) of generation gen lacks: the current
// generation's holds chain_data and data, the legacy one's is itself the statedb, one
// directory holding data.
func snapshotGaps(gen, dir string) ([]stateGap, error) {
	if gen != jobargs.CloudOpLegacy {
		return chainStateGaps(dir)
	}
	g, err := dirGap(dir)
	if err != nil || g == nil {
		return nil, err
	}
	return []stateGap{*g}, nil
}

// A stateGap is what keeps a directory from holding a node's chain state: one of chain_data
// and data absent, not a directory, or holding no data.
type stateGap struct {
	path string
	kind gapKind
}

type gapKind int

const (
	gapAbsent gapKind = iota
	gapNotDir
	gapEmpty
)

// chainStateGaps says what root lacks of a node's chain state: each of chain_data and data
// must be a directory (a symlink to one is not) holding data, that is at least one regular
// file of at least one byte somewhere in its tree. Sub-directories, empty files (RocksDB's
// LOCK) and symlinks are not data: a tree of only those is what a copy that stopped early
// leaves (mkdir -p, touch), and a database that holds anything, RocksDB or opendal, always
// has a file with bytes in it.
func chainStateGaps(root string) ([]stateGap, error) {
	var gaps []stateGap
	for _, name := range chainState {
		g, err := dirGap(filepath.Join(root, name))
		if err != nil {
			return nil, err
		}
		if g != nil {
			gaps = append(gaps, *g)
		}
	}
	return gaps, nil
}

// dirGap is what keeps p from being a directory holding data, nil when nothing does.
func dirGap(p string) (*stateGap, error) {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &stateGap{p, gapAbsent}, nil
	case err != nil:
		return nil, err
	case !fi.IsDir():
		return &stateGap{p, gapNotDir}, nil
	}
	full, err := holdsData(p)
	if err != nil {
		return nil, err
	}
	if !full {
		return &stateGap{p, gapEmpty}, nil
	}
	return nil, nil
}

// holdsData reports whether the tree at dir has a regular file of at least one byte; it
// stops at the first one, so a full database costs a few directory reads.
func holdsData(dir string) (bool, error) {
	found := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() > 0 {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found, err
}

// describeGaps names every gap in one phrase; absent is how the caller says a directory is
// missing ("wrote no", "left no", "no").
func describeGaps(gaps []stateGap, absent string) string {
	parts := make([]string, 0, len(gaps))
	for _, g := range gaps {
		switch g.kind {
		case gapAbsent:
			parts = append(parts, absent+" "+g.path)
		case gapNotDir:
			parts = append(parts, g.path+" is not a directory")
		case gapEmpty:
			parts = append(parts, g.path+" is empty")
		}
	}
	return strings.Join(parts, " and ")
}
