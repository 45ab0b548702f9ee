// Command cita-node-job is the binary of the operation Job's pod: it does one operation's
// data work on the mounted volumes (see pkg/nodeops/datamove), reports a one-line JSON result
// in the termination message for the controller to read, and talks to no API server — the
// controller stops and starts the node around it.
//
//	cita-node-job <backup|restore|fallback|snapshot|snapshot-restore|chown|recover> --flag=value ...
//
// The flags are defined by pkg/nodeops/jobargs, which also builds the Job's command.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/datamove"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// cloudOpBinary is looked up on PATH: the job image carries cloud-op, tests put fakes there.
const cloudOpBinary = "cloud-op"

func main() {
	os.Exit(run(os.Args))
}

func run(argv []string) int {
	args, err := jobargs.Parse(argv)
	if err != nil {
		return fail(terminationLogOf(argv), jobargs.Result{Op: opOf(argv)}, err)
	}
	// SIGTERM (the Job being deleted, the deadline) cancels the work so that the operation
	// puts the node's data back before the kubelet's SIGKILL.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	start := time.Now()
	res, err := runOp(ctx, args)
	res.Op = args.Op
	res.Seconds = time.Since(start).Round(time.Millisecond).Seconds()
	if err != nil {
		return fail(args.TerminationLogPath(), res, err)
	}
	if res.Warning != "" {
		fmt.Fprintf(os.Stderr, "cita-node-job: %s: warning: %s\n", args.Op, res.Warning)
	}
	if err := writeResult(args.TerminationLogPath(), res); err != nil {
		fmt.Fprintf(os.Stderr, "cita-node-job: %s succeeded but its result could not be written: %v\n", args.Op, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "cita-node-job: %s done: %s\n", args.Op, res.Encode())
	return 0
}

// runners is the binary's one runner per jobargs operation (TestEveryOpHasARunner). An
// operation that uses cloud-op has a withCloudOp runner; every other one a plain run.
var runners = map[jobargs.Op]runner{
	jobargs.OpBackup: {run: func(ctx context.Context, a jobargs.Args) (jobargs.Result, error) {
		return datamove.Backup(ctx, a.NodeRoot, a.BackupPath)
	}},
	jobargs.OpRestore: {run: func(ctx context.Context, a jobargs.Args) (jobargs.Result, error) {
		return datamove.Restore(ctx, datamove.RestoreOptions{Source: a.SourcePath, NodeRoot: a.NodeRoot, DeleteConsensusData: a.DeleteConsensusData})
	}},
	jobargs.OpRecover: {run: func(ctx context.Context, a jobargs.Args) (jobargs.Result, error) {
		note, err := datamove.RecoverNodeRoot(a.NodeRoot)
		return jobargs.Result{Warning: note}, err
	}},
	jobargs.OpChown: {run: func(ctx context.Context, a jobargs.Args) (jobargs.Result, error) {
		note, err := datamove.RecoverNodeRoot(a.NodeRoot)
		if err != nil {
			return jobargs.Result{}, err
		}
		n, err := datamove.Chown(ctx, a.NodeRoot, int(a.UID), int(a.GID))
		return jobargs.Result{Changed: n, Warning: note}, err
	}},
	jobargs.OpFallback: {withCloudOp: func(ctx context.Context, c *datamove.CloudOp, a jobargs.Args) (jobargs.Result, error) {
		return datamove.Fallback(ctx, c, cloudOpParams(a, ""))
	}},
	jobargs.OpSnapshot: {withCloudOp: func(ctx context.Context, c *datamove.CloudOp, a jobargs.Args) (jobargs.Result, error) {
		return datamove.Snapshot(ctx, c, cloudOpParams(a, a.BackupPath))
	}},
	jobargs.OpSnapshotRestore: {withCloudOp: func(ctx context.Context, c *datamove.CloudOp, a jobargs.Args) (jobargs.Result, error) {
		return datamove.SnapshotRestore(ctx, c, cloudOpParams(a, a.SourcePath))
	}},
}

// runner does one operation: exactly one of its fields is set.
type runner struct {
	run func(ctx context.Context, a jobargs.Args) (jobargs.Result, error)
	// withCloudOp runs once the image's cloud-op generation is known.
	withCloudOp func(ctx context.Context, c *datamove.CloudOp, a jobargs.Args) (jobargs.Result, error)
}

func runOp(ctx context.Context, a jobargs.Args) (jobargs.Result, error) {
	r, ok := runners[a.Op]
	if !ok {
		return jobargs.Result{}, fmt.Errorf("operation %s is not implemented", a.Op)
	}
	if r.run != nil {
		return r.run(ctx, a)
	}
	// The cloud-op operations: ask the image's cloud-op which generation it is, once.
	c, err := datamove.DetectCloudOp(ctx, cloudOpBinary, os.Stderr)
	if err != nil {
		return jobargs.Result{BlockHeight: a.BlockHeight}, err
	}
	return r.withCloudOp(ctx, c, a)
}

// cloudOpParams is what cloud-op needs of a; backupPath is where the snapshot is written or
// read, empty for a fallback.
func cloudOpParams(a jobargs.Args, backupPath string) datamove.CloudOpParams {
	return datamove.CloudOpParams{
		Height: a.BlockHeight, NodeRoot: a.NodeRoot, ConfigPath: a.ConfigPath, BackupPath: backupPath,
		Crypto: a.Crypto, Consensus: a.Consensus, DeleteConsensusData: a.DeleteConsensusData,
	}
}

// fail reports err as the one-line reason: on stderr for the Job's log and in the
// termination message for the CR's status.
func fail(terminationLog string, res jobargs.Result, err error) int {
	res.Error = oneLine(err.Error())
	fmt.Fprintf(os.Stderr, "cita-node-job: %s failed: %s\n", res.Op, res.Error)
	if werr := writeResult(terminationLog, res); werr != nil {
		fmt.Fprintf(os.Stderr, "cita-node-job: writing the result: %v\n", werr)
	}
	return 1
}

func writeResult(path string, res jobargs.Result) error {
	return os.WriteFile(path, append(res.Encode(), '\n'), 0o644)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// terminationLogOf finds the termination-log flag in argv that did not parse, so that even a
// bad command reports where the test or the pod spec expects it.
func terminationLogOf(argv []string) string {
	for _, arg := range argv {
		if p, ok := strings.CutPrefix(arg, "--termination-log="); ok && strings.HasPrefix(p, "/") {
			return p
		}
	}
	return jobargs.DefaultTerminationLog
}

func opOf(argv []string) jobargs.Op {
	if len(argv) > 1 {
		return jobargs.Op(argv[1])
	}
	return ""
}
