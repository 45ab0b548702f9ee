//go:build linux

package jobrunner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/datamove/cloudoptest"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Heights with a special meaning to the fake cloud-op, for tests of failures
// and of killed Jobs. Every other height succeeds.
const (
	// FailHeight: cloud-op fails (exit 1) with FailReason on stderr, as the
	// real one does for a height above the chain's tip.
	FailHeight int64 = 999999999
	// SlowHeight: cloud-op sleeps (up to 10 minutes) and dies on SIGTERM, so
	// the job binary's cancellation (putting the checkpoint back) can be seen.
	SlowHeight int64 = 888888888
	// HangHeight: cloud-op ignores SIGTERM and sleeps: only the runner's
	// SIGKILL of the process group ends it.
	HangHeight int64 = 777777777
	// DelayHeight + s (s < 100): cloud-op sleeps s seconds, then does its
	// work normally, so that a test can watch an operation while it runs.
	DelayHeight int64 = 600000000
	// TipHeight: for a rollback to TipHeight or TipHeight+1 the node is at
	// TipHeight (at any other height h it is at h+100). cloud-op then does
	// what the real one does for a height not below the node's: v6.7.4
	// prints "ignore rollback" and exits 0, the legacy one panics; nothing
	// is rolled back.
	TipHeight int64 = 500000000
)

// FailReason is the stderr line of the fake cloud-op at FailHeight.
const FailReason = "height above tip"

// FallbackMarker is the file, in the node root's chain_data, where the fake
// rollback / recover writes the height it rolled back to (one line).
const FallbackMarker = "FALLBACK_HEIGHT"

// The argument parsers of the two generations: each accepts exactly the
// command lines of DESIGN §4's table, and fails like a CLI parser (exit 2) on
// anything else, so a wrong command line from the job binary fails the Job.
const legacyParse = `case "$cmd" in
recover|state-backup|state-recover) ;;
*) usage "unrecognized subcommand '$cmd'" ;;
esac
while [ $# -gt 0 ]; do
	case "$1" in
	--node-root|--config-path|--backup-path|--crypto|--consensus)
		[ $# -ge 2 ] || usage "$1 needs a value"
		case "$1" in
		--node-root) root=$2 ;;
		--config-path) config=$2 ;;
		--backup-path) [ "$cmd" != recover ] || usage "unexpected argument '$1'"; backup=$2 ;;
		--crypto) crypto=$2 ;;
		--consensus) consensus=$2 ;;
		esac
		shift 2 ;;
	--is-clear) [ "$cmd" != state-backup ] || usage "unexpected argument '$1'"; clear=1; shift ;;
	*) usage "unexpected argument '$1'" ;;
	esac
done
case "$crypto" in sm|eth) ;; *) usage "--crypto must be sm or eth, got '$crypto'" ;; esac
case "$consensus" in bft|raft|overlord) ;; *) usage "--consensus must be bft, raft or overlord, got '$consensus'" ;; esac
case "$cmd" in
recover) op=rollback ;;
state-backup) op=snapshot ;;
state-recover) op=restore ;;
esac
`

const currentParse = `case "$cmd" in
rollback|backup) ;;
*) usage "unrecognized subcommand '$cmd'" ;;
esac
while [ $# -gt 0 ]; do
	case "$1" in
	-n|-c|-p)
		[ $# -ge 2 ] || usage "$1 needs a value"
		case "$1" in
		-n) root=$2 ;;
		-c) config=$2 ;;
		-p) [ "$cmd" = backup ] || usage "unexpected argument '$1'"; backup=$2 ;;
		esac
		shift 2 ;;
	--clean) [ "$cmd" = rollback ] || usage "unexpected argument '$1'"; clear=1; shift ;;
	*) usage "unexpected argument '$1'" ;;
	esac
done
case "$cmd" in
rollback) op=rollback ;;
backup) op=snapshot ;;
esac
`

// cloudOpScript is the fake cloud-op of one generation. Every call but --help
// is appended to callsFile (generation and arguments, tab-separated).
func cloudOpScript(gen, callsFile string) string {
	parse := currentParse
	if gen == jobargs.CloudOpLegacy {
		parse = legacyParse
	}
	return fmt.Sprintf(`#!/bin/sh
# Fake cloud-op (%[1]s generation), written by test/jobrunner: it speaks the
# real one's command line and moves chain_data / data around like it.
set -u
case "${1:-}" in
""|-h|--help|help)
	cat <<'HELP'
%[2]sHELP
	exit 0 ;;
esac
line=%[1]s
for a in "$@"; do line="$line	$a"; done
printf '%%s\n' "$line" >> %[3]q

usage() { echo "error: $*" >&2; exit 2; }
cmd=$1; shift
[ $# -ge 1 ] || usage "missing the height"
height=$1; shift
case "$height" in ''|*[!0-9]*) usage "invalid height '$height'" ;; esac
root= config= backup= crypto= consensus= clear= op=
%[4]s
[ -n "$root" ] || usage "missing the node root"
[ -n "$config" ] || usage "missing the config path"
[ -d "$root" ] || { echo "error: node root $root: no such directory" >&2; exit 1; }
[ -f "$config" ] || { echo "error: config $config: no such file" >&2; exit 1; }
if [ "$op" != rollback ]; then
	[ -n "$backup" ] || usage "missing the backup path"
	[ -d "$backup" ] || { echo "error: backup path $backup: no such directory" >&2; exit 1; }
fi

case "$height" in
%[5]d) echo "error: %[6]s" >&2; exit 1 ;;
%[7]d) exec sleep 600 ;;
%[8]d) trap '' TERM INT; exec sleep 600 ;;
esac
if [ "$height" -ge %[10]d ] && [ "$height" -lt $((%[10]d + 100)) ]; then
	sleep $((height - %[10]d))
fi

clear_consensus() {
	if [ -n "$clear" ]; then rm -rf "$root/raft-data-dir" "$root/overlord_wal"; fi
}
case "$op" in
rollback)
	[ -d "$root/chain_data" ] || { echo "error: $root/chain_data: no such directory" >&2; exit 1; }
	# What each generation prints before it rolls back, and how it refuses a
	# height not below the node's (see datamove's rollback tests).
	current=$((height + 100))
	if [ "$height" -eq %[11]d ] || [ "$height" -eq $((%[11]d + 1)) ]; then current=%[11]d; fi
	if [ "$line" = "${line#legacy}" ]; then
		echo "current height: $current"
		echo "rollback height: $height"
		if [ "$height" -ge "$current" ]; then
			echo "rollback height($height) >= current height($current), ignore rollback"
			exit 0
		fi
	else
		echo "layer2 current height: $current"
		echo "layer2 current height recover to: $height"
		if [ "$height" -ge "$current" ]; then
			echo "thread 'main' panicked at 'recover height($height) >= current height($current)', src/recover/chain.rs:39:9" >&2
			exit 101
		fi
	fi
	printf '%%s\n' "$height" > "$root/chain_data/%[9]s" || exit 1
	clear_consensus
	echo "rolled back to height $height" ;;
snapshot)
	dest="$backup/$height"
	rm -rf "$dest" && mkdir -p "$dest" || exit 1
	if [ %[1]s = legacy ]; then
		# state-backup writes the executor's state at the height as one
		# RocksDB, P/<h> itself (v0.2.5 src/backup/state.rs).
		printf 'MANIFEST-000001\n' > "$dest/CURRENT" &&
		printf 'manifest of height %%s\n' "$height" > "$dest/MANIFEST-000001" &&
		printf 'state of height %%s\n' "$height" > "$dest/000003.sst" &&
		: > "$dest/LOCK" || exit 1
		echo "extract_backup finish."
	else
		cp -a "$root/chain_data" "$dest/" || exit 1
		if [ -d "$root/data" ]; then cp -a "$root/data" "$dest/" || exit 1; fi
		echo "state of height $height backed up to $dest"
	fi ;;
restore)
	# state-recover (legacy only) rolls the chain back in place (the marker
	# says to which height) and copies P/<h> over the executor's statedb,
	# data/statedb (v0.2.5 src/recover.rs state_recover,
	# src/recover/executor.rs move_state).
	src="$backup/$height"
	[ -d "$src" ] || { echo "thread 'main' panicked at 'called Result::unwrap() on an Err value: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }', src/recover/executor.rs:90:26" >&2; exit 101; }
	[ -d "$root/chain_data" ] || { echo "error: $root/chain_data: no such directory" >&2; exit 1; }
	printf '%%s\n' "$height" > "$root/chain_data/%[9]s" || exit 1
	rm -rf "$root/data/statedb" && mkdir -p "$root/data" && cp -a "$src" "$root/data/statedb" || exit 1
	clear_consensus
	echo "recovered state of height $height" ;;
esac
exit 0
`, gen, cloudoptest.Help[gen], callsFile, parse, FailHeight, FailReason, SlowHeight, HangHeight, FallbackMarker, DelayHeight, TipHeight)
}

// writeToolDirs makes, for each generation, a directory holding the fake
// cloud-op and cita-node-job (a symlink to the job binary): the head of the
// container's PATH.
func writeToolDirs(workDir, jobBinary, callsFile string) (map[string]string, error) {
	dirs := map[string]string{}
	for _, gen := range []string{jobargs.CloudOpLegacy, jobargs.CloudOpCurrent} {
		dir := filepath.Join(workDir, "bin", gen)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "cloud-op"), []byte(cloudOpScript(gen, callsFile)), 0o755); err != nil {
			return nil, err
		}
		link := filepath.Join(dir, jobargs.BinaryName)
		_ = os.Remove(link)
		if err := os.Symlink(jobBinary, link); err != nil {
			return nil, err
		}
		dirs[gen] = dir
	}
	return dirs, nil
}

// CloudOpCall is one run of the fake cloud-op (other than --help).
type CloudOpCall struct {
	Generation string
	Args       []string
}

func readCloudOpCalls(path string) ([]CloudOpCall, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var calls []CloudOpCall
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		calls = append(calls, CloudOpCall{Generation: f[0], Args: f[1:]})
	}
	return calls, nil
}

// FakeCloudOp is the fake cloud-op of a generation as one shell script, for
// a job image's stand-in base (test/realnode): it needs /bin/sh and the
// file tools (cp, rm, mkdir, sleep), and appends its calls to callsFile.
func FakeCloudOp(gen, callsFile string) string { return cloudOpScript(gen, callsFile) }
