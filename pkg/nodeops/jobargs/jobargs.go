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
	"iter"
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

// opTable declares each operation once: the flags it takes (besides termination-log, which
// every operation takes) and whether it may run cloud-op. Ops, Parse, Command, Validate and
// UsesCloudOp all read it; the job binary has one runner per entry.
var opTable = []opSpec{
	{op: OpBackup, flags: []string{"node-root", "backup-path"}},
	{op: OpRestore, flags: []string{"node-root", "source-path", "delete-consensus-data"}},
	{op: OpFallback, cloudOp: true,
		flags: []string{"node-root", "config-path", "block-height", "crypto", "consensus", "delete-consensus-data"}},
	{op: OpSnapshot, cloudOp: true,
		flags: []string{"node-root", "config-path", "backup-path", "block-height", "crypto", "consensus"}},
	{op: OpSnapshotRestore, cloudOp: true,
		flags: []string{"node-root", "config-path", "source-path", "block-height", "crypto", "consensus", "delete-consensus-data"}},
	{op: OpChown, flags: []string{"node-root", "uid", "gid"}},
	{op: OpRecover, flags: []string{"node-root"}},
}

type opSpec struct {
	op Op
	// flags names the entries of flagTable the operation takes, besides the everyOp ones;
	// Command writes them in flagTable's order.
	flags []string
	// cloudOp: the operation may run cloud-op (and so may need Crypto, Consensus and a
	// config file).
	cloudOp bool
}

// Ops lists every operation, in a stable order.
var Ops = func() []Op {
	ops := make([]Op, len(opTable))
	for i, s := range opTable {
		ops[i] = s.op
	}
	return ops
}()

func lookupOp(o Op) (opSpec, bool) {
	i := slices.IndexFunc(opTable, func(s opSpec) bool { return s.op == o })
	if i < 0 {
		return opSpec{}, false
	}
	return opTable[i], true
}

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

// flagTable declares each flag of the job binary once, in the order Command writes them.
// An operation takes the flags its opTable entry names, plus the everyOp ones.
var flagTable = []flagSpec{
	{name: "node-root", usage: "node root directory",
		field: func(a *Args) value { return stringValue{&a.NodeRoot, absolutePath} }},
	{name: "config-path", usage: "node config.toml",
		field: func(a *Args) value { return stringValue{&a.ConfigPath, absolutePath} }},
	{name: "source-path", usage: "backup or snapshot directory to restore from",
		field: func(a *Args) value { return stringValue{&a.SourcePath, absolutePath} }},
	{name: "backup-path", usage: "backup or snapshot directory to write",
		field: func(a *Args) value { return stringValue{&a.BackupPath, absolutePath} }},
	{name: "block-height", usage: "block height",
		field: func(a *Args) value { return intValue{&a.BlockHeight, nonNegative} }},
	{name: "crypto", usage: "crypto: sm|eth", optional: true,
		field: func(a *Args) value { return stringValue{&a.Crypto, oneOf(Cryptos)} }},
	{name: "consensus", usage: "consensus: bft|raft|overlord", optional: true,
		field: func(a *Args) value { return stringValue{&a.Consensus, oneOf(Consensuses)} }},
	{name: "delete-consensus-data", usage: "remove raft-data-dir and overlord_wal", optional: true,
		field: func(a *Args) value { return boolValue{&a.DeleteConsensusData} }},
	{name: "uid", usage: "owner uid",
		field: func(a *Args) value { return intValue{&a.UID, ownerID} }},
	{name: "gid", usage: "owner gid",
		field: func(a *Args) value { return intValue{&a.GID, ownerID} }},
	{name: "termination-log", usage: "where the JSON result is written", optional: true, everyOp: true,
		field: func(a *Args) value { return stringValue{&a.TerminationLog, absolutePath} }},
}

type flagSpec struct {
	name, usage string
	// field is the flag's field of a, with its kind and what it may hold.
	field func(a *Args) value
	// optional: Parse does not require it, Command leaves it out when zero and Validate
	// checks it only when set. Every other flag its operation takes must be given.
	optional bool
	// everyOp: every operation takes it without naming it.
	everyOp bool
}

// value is one Args field as a flag: a string, an int64 or a bool.
type value interface {
	define(fs *flag.FlagSet, name, usage string)
	// arg is the field on the command line: --name=value, so that an empty value survives.
	// A set bool is a bare --name.
	arg(name string) string
	isZero() bool
	check() error
}

type stringValue struct {
	p     *string
	valid func(string) error
}

func (v stringValue) define(fs *flag.FlagSet, name, usage string) { fs.StringVar(v.p, name, "", usage) }
func (v stringValue) arg(name string) string                      { return "--" + name + "=" + *v.p }
func (v stringValue) isZero() bool                                { return *v.p == "" }
func (v stringValue) check() error                                { return v.valid(*v.p) }

type intValue struct {
	p     *int64
	valid func(int64) error
}

func (v intValue) define(fs *flag.FlagSet, name, usage string) { fs.Int64Var(v.p, name, 0, usage) }
func (v intValue) arg(name string) string                      { return "--" + name + "=" + strconv.FormatInt(*v.p, 10) }
func (v intValue) isZero() bool                                { return *v.p == 0 }
func (v intValue) check() error                                { return v.valid(*v.p) }

type boolValue struct{ p *bool }

func (v boolValue) define(fs *flag.FlagSet, name, usage string) { fs.BoolVar(v.p, name, false, usage) }
func (v boolValue) isZero() bool                                { return !*v.p }
func (v boolValue) check() error                                { return nil }
func (v boolValue) arg(name string) string {
	if *v.p { // a false one is written only if the flag is required
		return "--" + name
	}
	return "--" + name + "=false"
}

// The checks of flag values; Validate puts the flag's name in front.

func absolutePath(p string) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("must be an absolute path, got %q", p)
	}
	return nil
}

func nonNegative(n int64) error {
	if n < 0 {
		return fmt.Errorf("must not be negative, got %d", n)
	}
	return nil
}

func oneOf(set []string) func(string) error {
	return func(s string) error {
		if !slices.Contains(set, s) {
			return fmt.Errorf("must be one of %v, got %q", set, s)
		}
		return nil
	}
}

// ownerID: Linux ids are 32 bits and (uid_t)-1 means "leave unchanged" to chown.
func ownerID(n int64) error {
	if n < 0 || n >= 1<<32-1 {
		return fmt.Errorf("must be in [0, 4294967294], got %d", n)
	}
	return nil
}

// takes reports whether the operation uses flag f.
func (s opSpec) takes(f flagSpec) bool {
	return f.everyOp || slices.Contains(s.flags, f.name)
}

// flagsTaken yields the flags the operation takes, in flagTable's order.
func (s opSpec) flagsTaken() iter.Seq[flagSpec] {
	return func(yield func(flagSpec) bool) {
		for _, f := range flagTable {
			if s.takes(f) && !yield(f) {
				return
			}
		}
	}
}

// UsesCloudOp reports whether the operation may run cloud-op (and so may need Crypto,
// Consensus and a config file).
func (o Op) UsesCloudOp() bool {
	s, _ := lookupOp(o)
	return s.cloudOp
}

// Command is the container command that runs a: the binary, the subcommand, then every flag
// the operation takes as --name=value (so an empty value survives), in a fixed order.
func (a Args) Command() []string {
	argv := []string{BinaryName, string(a.Op)}
	s, _ := lookupOp(a.Op)
	for f := range s.flagsTaken() {
		if v := f.field(&a); !f.optional || !v.isZero() {
			argv = append(argv, v.arg(f.name))
		}
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
	s, ok := lookupOp(a.Op)
	if !ok {
		return Args{}, fmt.Errorf("unknown operation %q (want one of %s)", argv[1], opList())
	}
	fs := flag.NewFlagSet(BinaryName+" "+string(a.Op), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for f := range s.flagsTaken() {
		f.field(&a).define(fs, f.name, f.usage)
	}
	if err := fs.Parse(argv[2:]); err != nil {
		return Args{}, fmt.Errorf("%s: %w", a.Op, err)
	}
	if fs.NArg() > 0 {
		return Args{}, fmt.Errorf("%s: unexpected argument %q", a.Op, fs.Arg(0))
	}
	seen := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { seen[f.Name] = true })
	for f := range s.flagsTaken() {
		if !f.optional && !seen[f.name] {
			return Args{}, fmt.Errorf("%s: missing --%s", a.Op, f.name)
		}
	}
	return a, a.Validate()
}

// Validate checks a before anything is touched, so a bad Job spec fails with a reason instead
// of half-doing an operation.
func (a Args) Validate() error {
	s, ok := lookupOp(a.Op)
	if !ok {
		return fmt.Errorf("unknown operation %q (want one of %s)", a.Op, opList())
	}
	var errs []error
	for f := range s.flagsTaken() {
		v := f.field(&a)
		if f.optional && v.isZero() {
			continue
		}
		if err := v.check(); err != nil {
			errs = append(errs, fmt.Errorf("--%s %w", f.name, err))
		}
	}
	for _, f := range flagTable {
		if !s.takes(f) && !f.field(&a).isZero() {
			errs = append(errs, fmt.Errorf("%s does not take --%s", a.Op, f.name))
		}
	}
	return errors.Join(errs...)
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
