// Package jobargs is the one contract between the Job specs the controller builds and the
// cita-node-job binary that runs inside them: the operations, their flags, the paths where the
// Job's volumes are mounted and the result the binary reports. Both sides use this package, so
// a flag renamed on one side cannot silently break the other.
package jobargs

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
)

// BinaryName is the job binary's name in the job image; Command puts it first.
const BinaryName = "cita-node-job"

// Where the controller mounts the Job's volumes and where the binary expects them. The node's
// data directory (its PVC, at the node's subPath) is the node root; a Backup or Snapshot PVC is
// mounted whole; a cloud-config node's `<node>-config` ConfigMap is mounted as a directory.
const (
	// NodeRootMountPath is the node root: `chain_data`, `data`, keys, consensus WAL, ...
	NodeRootMountPath = "/cita/node"
	// BackupMountPath is the root of a Backup or Snapshot PVC: the destination of backup and
	// snapshot, the source of restore and snapshot-restore.
	BackupMountPath = "/cita/backup"
	// ConfigMountPath is where a cloud-config node's `<node>-config` ConfigMap is mounted.
	ConfigMountPath = "/cita/config"
	// ConfigFileName is the node's config file, in ConfigMountPath (cloud-config) or in the
	// node root (helm, python).
	ConfigFileName = "config.toml"
)

// DefaultTerminationLog is the kubelet's default terminationMessagePath.
const DefaultTerminationLog = "/dev/termination-log"

// Op is one operation of the job binary; it is the binary's subcommand.
type Op string

const (
	// OpBackup copies the node root's chain state to BackupPath with a checksum manifest.
	OpBackup Op = "backup"
	// OpRestore replaces the node root's chain state with the backup at SourcePath.
	OpRestore Op = "restore"
	// OpFallback rolls the node's chain state back to BlockHeight with cloud-op.
	OpFallback Op = "fallback"
	// OpSnapshot writes the chain state at BlockHeight to BackupPath/<height> with cloud-op.
	OpSnapshot Op = "snapshot"
	// OpSnapshotRestore restores the snapshot SourcePath/<height> into the node root.
	OpSnapshotRestore Op = "snapshot-restore"
	// OpChown changes the owner of everything in the node root to UID:GID.
	OpChown Op = "chown"
	// OpRecover makes the node root usable after a run that was killed
	// without cleaning up (SIGKILL, a lost machine): it puts back an
	// interrupted run's checkpoint, finishes or drops an interrupted restore.
	OpRecover Op = "recover"
)

// Ops lists every operation, in a stable order.
var Ops = []Op{OpBackup, OpRestore, OpFallback, OpSnapshot, OpSnapshotRestore, OpChown, OpRecover}

// Crypto and consensus kinds, as the controller reads them from the node's container images.
// Only the legacy cloud-op generation needs them.
var (
	Cryptos     = []string{"sm", "eth"}
	Consensuses = []string{"bft", "raft", "overlord"}
)

// Args is everything one run of the job binary needs. Fields an operation does not use stay
// zero: Command does not emit them and Parse refuses them.
type Args struct {
	Op Op
	// NodeRoot is the node's data directory, normally NodeRootMountPath.
	NodeRoot string
	// ConfigPath is the node's config.toml (fallback, snapshot, snapshot-restore).
	ConfigPath string
	// SourcePath is where restore reads a backup (the backup volume root) and where
	// snapshot-restore finds snapshots (it restores SourcePath/<BlockHeight>).
	SourcePath string
	// BackupPath is where backup writes (the backup volume root) and where snapshot writes
	// (the snapshot lands in BackupPath/<BlockHeight>).
	BackupPath string
	// BlockHeight is the height of fallback, snapshot and snapshot-restore.
	BlockHeight int64
	// Crypto (sm|eth) and Consensus (bft|raft|overlord) of the node; the legacy cloud-op
	// needs them, the current one ignores them. May be empty when unknown.
	Crypto    string
	Consensus string
	// DeleteConsensusData removes the consensus WAL (raft-data-dir, overlord_wal) on
	// restore, fallback and snapshot-restore.
	DeleteConsensusData bool
	// UID and GID are the owner chown sets.
	UID, GID int64
	// TerminationLog is where the Result is written; empty means DefaultTerminationLog.
	TerminationLog string
}

type flagName string

const (
	flagNodeRoot            flagName = "node-root"
	flagConfigPath          flagName = "config-path"
	flagSourcePath          flagName = "source-path"
	flagBackupPath          flagName = "backup-path"
	flagBlockHeight         flagName = "block-height"
	flagCrypto              flagName = "crypto"
	flagConsensus           flagName = "consensus"
	flagDeleteConsensusData flagName = "delete-consensus-data"
	flagUID                 flagName = "uid"
	flagGID                 flagName = "gid"
	flagTerminationLog      flagName = "termination-log"
)

// opFlags says which flags each operation takes (termination-log: all of them).
var opFlags = map[Op][]flagName{
	OpBackup:          {flagNodeRoot, flagBackupPath},
	OpRestore:         {flagNodeRoot, flagSourcePath, flagDeleteConsensusData},
	OpFallback:        {flagNodeRoot, flagConfigPath, flagBlockHeight, flagCrypto, flagConsensus, flagDeleteConsensusData},
	OpSnapshot:        {flagNodeRoot, flagConfigPath, flagBackupPath, flagBlockHeight, flagCrypto, flagConsensus},
	OpSnapshotRestore: {flagNodeRoot, flagConfigPath, flagSourcePath, flagBlockHeight, flagCrypto, flagConsensus, flagDeleteConsensusData},
	OpChown:           {flagNodeRoot, flagUID, flagGID},
	OpRecover:         {flagNodeRoot},
}

// takes reports whether the operation uses flag f.
func (o Op) takes(f flagName) bool {
	if f == flagTerminationLog {
		return true
	}
	return slices.Contains(opFlags[o], f)
}

// UsesCloudOp reports whether the operation may run cloud-op (and so may need Crypto,
// Consensus and a config file).
func (o Op) UsesCloudOp() bool {
	return o == OpFallback || o == OpSnapshot || o == OpSnapshotRestore
}

// Command is the container command that runs a: the binary, the subcommand, then every flag
// the operation takes as --name=value (so an empty value survives), in a fixed order.
func (a Args) Command() []string {
	argv := []string{BinaryName, string(a.Op)}
	add := func(f flagName, v string) { argv = append(argv, "--"+string(f)+"="+v) }
	for _, f := range opFlags[a.Op] {
		switch f {
		case flagNodeRoot:
			add(f, a.NodeRoot)
		case flagConfigPath:
			add(f, a.ConfigPath)
		case flagSourcePath:
			add(f, a.SourcePath)
		case flagBackupPath:
			add(f, a.BackupPath)
		case flagBlockHeight:
			add(f, strconv.FormatInt(a.BlockHeight, 10))
		case flagCrypto:
			if a.Crypto != "" {
				add(f, a.Crypto)
			}
		case flagConsensus:
			if a.Consensus != "" {
				add(f, a.Consensus)
			}
		case flagDeleteConsensusData:
			if a.DeleteConsensusData {
				argv = append(argv, "--"+string(f))
			}
		case flagUID:
			add(f, strconv.FormatInt(a.UID, 10))
		case flagGID:
			add(f, strconv.FormatInt(a.GID, 10))
		}
	}
	if a.TerminationLog != "" {
		add(flagTerminationLog, a.TerminationLog)
	}
	return argv
}

// Parse reads the argv the binary was started with (argv[0] is the binary, argv[1] the
// operation) and validates it. It is the inverse of Command.
func Parse(argv []string) (Args, error) {
	if len(argv) < 2 {
		return Args{}, fmt.Errorf("usage: %s <%s> [flags]", BinaryName, opList())
	}
	a := Args{Op: Op(argv[1])}
	if _, ok := opFlags[a.Op]; !ok {
		return Args{}, fmt.Errorf("unknown operation %q (want one of %s)", argv[1], opList())
	}
	fs := flag.NewFlagSet(BinaryName+" "+string(a.Op), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	str := func(f flagName, p *string, usage string) {
		if a.Op.takes(f) {
			fs.StringVar(p, string(f), "", usage)
		}
	}
	num := func(f flagName, p *int64, usage string) {
		if a.Op.takes(f) {
			fs.Int64Var(p, string(f), 0, usage)
		}
	}
	str(flagNodeRoot, &a.NodeRoot, "node root directory")
	str(flagConfigPath, &a.ConfigPath, "node config.toml")
	str(flagSourcePath, &a.SourcePath, "backup or snapshot directory to restore from")
	str(flagBackupPath, &a.BackupPath, "backup or snapshot directory to write")
	num(flagBlockHeight, &a.BlockHeight, "block height")
	str(flagCrypto, &a.Crypto, "crypto: sm|eth")
	str(flagConsensus, &a.Consensus, "consensus: bft|raft|overlord")
	if a.Op.takes(flagDeleteConsensusData) {
		fs.BoolVar(&a.DeleteConsensusData, string(flagDeleteConsensusData), false, "remove raft-data-dir and overlord_wal")
	}
	num(flagUID, &a.UID, "owner uid")
	num(flagGID, &a.GID, "owner gid")
	str(flagTerminationLog, &a.TerminationLog, "where the JSON result is written")
	if err := fs.Parse(argv[2:]); err != nil {
		return Args{}, fmt.Errorf("%s: %w", a.Op, err)
	}
	if fs.NArg() > 0 {
		return Args{}, fmt.Errorf("%s: unexpected argument %q", a.Op, fs.Arg(0))
	}
	seen := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { seen[f.Name] = true })
	for _, f := range opFlags[a.Op] {
		if required(f) && !seen[string(f)] {
			return Args{}, fmt.Errorf("%s: missing --%s", a.Op, f)
		}
	}
	return a, a.Validate()
}

// required reports whether a flag must be given whenever its operation takes it.
func required(f flagName) bool {
	switch f {
	case flagCrypto, flagConsensus, flagDeleteConsensusData, flagTerminationLog:
		return false
	}
	return true
}

// Validate checks a before anything is touched, so a bad Job spec fails with a reason instead
// of half-doing an operation.
func (a Args) Validate() error {
	flags, ok := opFlags[a.Op]
	if !ok {
		return fmt.Errorf("unknown operation %q (want one of %s)", a.Op, opList())
	}
	var errs []error
	abs := func(f flagName, p string) {
		if !path.IsAbs(p) {
			errs = append(errs, fmt.Errorf("--%s must be an absolute path, got %q", f, p))
		}
	}
	for _, f := range flags {
		switch f {
		case flagNodeRoot:
			abs(f, a.NodeRoot)
		case flagConfigPath:
			abs(f, a.ConfigPath)
		case flagSourcePath:
			abs(f, a.SourcePath)
		case flagBackupPath:
			abs(f, a.BackupPath)
		case flagBlockHeight:
			if a.BlockHeight < 0 {
				errs = append(errs, fmt.Errorf("--%s must not be negative, got %d", f, a.BlockHeight))
			}
		case flagCrypto:
			if a.Crypto != "" && !slices.Contains(Cryptos, a.Crypto) {
				errs = append(errs, fmt.Errorf("--%s must be one of %v, got %q", f, Cryptos, a.Crypto))
			}
		case flagConsensus:
			if a.Consensus != "" && !slices.Contains(Consensuses, a.Consensus) {
				errs = append(errs, fmt.Errorf("--%s must be one of %v, got %q", f, Consensuses, a.Consensus))
			}
		case flagUID, flagGID:
			v := a.UID
			if f == flagGID {
				v = a.GID
			}
			// Linux ids are 32 bits and (uid_t)-1 means "leave unchanged" to chown.
			if v < 0 || v >= 1<<32-1 {
				errs = append(errs, fmt.Errorf("--%s must be in [0, 4294967294], got %d", f, v))
			}
		}
	}
	if a.TerminationLog != "" {
		abs(flagTerminationLog, a.TerminationLog)
	}
	for _, f := range []flagName{flagConfigPath, flagSourcePath, flagBackupPath, flagBlockHeight, flagCrypto, flagConsensus, flagDeleteConsensusData, flagUID, flagGID} {
		if !a.Op.takes(f) && a.isSet(f) {
			errs = append(errs, fmt.Errorf("%s does not take --%s", a.Op, f))
		}
	}
	return errors.Join(errs...)
}

func (a Args) isSet(f flagName) bool {
	switch f {
	case flagConfigPath:
		return a.ConfigPath != ""
	case flagSourcePath:
		return a.SourcePath != ""
	case flagBackupPath:
		return a.BackupPath != ""
	case flagBlockHeight:
		return a.BlockHeight != 0
	case flagCrypto:
		return a.Crypto != ""
	case flagConsensus:
		return a.Consensus != ""
	case flagDeleteConsensusData:
		return a.DeleteConsensusData
	case flagUID:
		return a.UID != 0
	case flagGID:
		return a.GID != 0
	}
	return false
}

// TerminationLogPath is where the binary writes its Result.
func (a Args) TerminationLogPath() string {
	if a.TerminationLog == "" {
		return DefaultTerminationLog
	}
	return a.TerminationLog
}

func opList() string {
	names := make([]string, len(Ops))
	for i, o := range Ops {
		names[i] = string(o)
	}
	return strings.Join(names, "|")
}
