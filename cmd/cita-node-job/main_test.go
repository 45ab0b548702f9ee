package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// buildJob builds the binary as the image would carry it.
func buildJob(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), jobargs.BinaryName)
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runJob runs the binary with the container command the controller would build from a.
func runJob(t *testing.T, bin string, a jobargs.Args) (jobargs.Result, string, error) {
	t.Helper()
	argv := a.Command()
	cmd := exec.Command(bin, argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	msg, rerr := os.ReadFile(a.TerminationLog)
	if rerr != nil {
		t.Fatalf("no termination message: %v (stderr: %s)", rerr, stderr.String())
	}
	if n := bytes.Count(msg, []byte("\n")); n != 1 || len(msg) > jobargs.MaxResultBytes+1 {
		t.Errorf("termination message is not one line within 4 KiB: %q", msg)
	}
	res, derr := jobargs.DecodeResult(bytes.TrimSpace(msg))
	if derr != nil {
		t.Fatal(derr)
	}
	return res, stderr.String(), err
}

func write(t *testing.T, path, content string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBackupRestoreChownThroughTheBinary(t *testing.T) {
	bin := buildJob(t)
	dir := t.TempDir()
	nodeA, nodeB, backup := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "backup")
	write(t, filepath.Join(nodeA, "chain_data/000001.sst"), "blocks of A")
	write(t, filepath.Join(nodeA, "data/CURRENT"), "state of A")
	write(t, filepath.Join(nodeB, "chain_data/000001.sst"), "blocks of B")
	write(t, filepath.Join(nodeB, "kms.db"), "keys of B")
	write(t, filepath.Join(nodeB, "raft-data-dir/wal"), "wal of B")
	os.MkdirAll(backup, 0o755)
	result := filepath.Join(dir, "termination-log")

	res, stderr, err := runJob(t, bin, jobargs.Args{Op: jobargs.OpBackup, NodeRoot: nodeA, BackupPath: backup, TerminationLog: result})
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, stderr)
	}
	if res.Op != jobargs.OpBackup || res.Files != 2 || res.Bytes != int64(len("blocks of A")+len("state of A")) || !strings.HasPrefix(res.Checksum, "sha256:") || res.Error != "" {
		t.Errorf("backup result %+v", res)
	}

	res, stderr, err = runJob(t, bin, jobargs.Args{Op: jobargs.OpRestore, NodeRoot: nodeB, SourcePath: backup, DeleteConsensusData: true, TerminationLog: result})
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, stderr)
	}
	if res.Verified == nil || !*res.Verified || res.Files != 2 {
		t.Errorf("restore result %+v", res)
	}
	if b, _ := os.ReadFile(filepath.Join(nodeB, "chain_data/000001.sst")); string(b) != "blocks of A" {
		t.Errorf("restored chain_data holds %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(nodeB, "kms.db")); string(b) != "keys of B" {
		t.Errorf("restore touched kms.db: %q", b)
	}
	if _, err := os.Stat(filepath.Join(nodeB, "raft-data-dir")); !os.IsNotExist(err) {
		t.Errorf("--delete-consensus-data left raft-data-dir")
	}

	res, stderr, err = runJob(t, bin, jobargs.Args{Op: jobargs.OpChown, NodeRoot: nodeB, UID: 1000, GID: 1000, TerminationLog: result})
	if err != nil || res.Changed == 0 {
		t.Fatalf("chown: %v, result %+v\n%s", err, res, stderr)
	}
}

func TestFailureIsOneLineReasonAndNonZeroExit(t *testing.T) {
	bin := buildJob(t)
	dir := t.TempDir()
	node := filepath.Join(dir, "node")
	write(t, filepath.Join(node, "data/CURRENT"), "no chain_data here")
	result := filepath.Join(dir, "termination-log")

	res, stderr, err := runJob(t, bin, jobargs.Args{Op: jobargs.OpBackup, NodeRoot: node, BackupPath: dir, TerminationLog: result})
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("exit: %v, want non-zero", err)
	}
	if !strings.Contains(res.Error, "has no chain_data") {
		t.Errorf("result error %q does not give the reason", res.Error)
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); !strings.Contains(lines[len(lines)-1], "has no chain_data") {
		t.Errorf("stderr does not end with the reason: %q", stderr)
	}

	// cloud-op's stderr reaches the result.
	fakes := t.TempDir()
	write(t, filepath.Join(fakes, "cloud-op"), "#!/bin/sh\n[ \"$1\" = --help ] && { echo 'Commands:'; echo '  rollback  roll back'; exit 0; }\necho 'Error: height 99 is not below the current height 10' >&2\nexit 1\n")
	os.Chmod(filepath.Join(fakes, "cloud-op"), 0o755)
	write(t, filepath.Join(node, "chain_data/CURRENT"), "now a node")
	a := jobargs.Args{Op: jobargs.OpFallback, NodeRoot: node, ConfigPath: filepath.Join(node, "config.toml"), BlockHeight: 99, TerminationLog: result}
	argv := a.Command()
	cmd := exec.Command(bin, argv[1:]...)
	cmd.Env = append(os.Environ(), "PATH="+fakes+":"+os.Getenv("PATH"))
	if err := cmd.Run(); err == nil {
		t.Fatalf("fallback with a failing cloud-op succeeded")
	}
	msg, _ := os.ReadFile(result)
	res, _ = jobargs.DecodeResult(bytes.TrimSpace(msg))
	if !strings.Contains(res.Error, "height 99 is not below the current height 10") || res.CloudOpGeneration != jobargs.CloudOpCurrent {
		t.Errorf("fallback result %+v lacks cloud-op's reason or generation", res)
	}
}

func TestBadCommandFailsWithTheReason(t *testing.T) {
	bin := buildJob(t)
	result := filepath.Join(t.TempDir(), "termination-log")
	cmd := exec.Command(bin, "backup", "--node-root=/n", "--termination-log="+result)
	if err := cmd.Run(); err == nil {
		t.Fatalf("backup without --backup-path succeeded")
	}
	msg, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := jobargs.DecodeResult(bytes.TrimSpace(msg)); !strings.Contains(res.Error, "missing --backup-path") {
		t.Errorf("result %q does not name the missing flag", msg)
	}
}

// TestRecoverCleansUpAfterAKilledRun: the recover subcommand, which the
// controller runs after a Job died without cleaning up, drops an
// uncommitted restore's staging copy and leaves the live data alone.
func TestRecoverCleansUpAfterAKilledRun(t *testing.T) {
	bin := buildJob(t)
	dir := t.TempDir()
	node := filepath.Join(dir, "node")
	write(t, filepath.Join(node, "chain_data/000001.sst"), "live blocks")
	write(t, filepath.Join(node, ".cita-node-job-restore/chain_data/000001.sst"), "half a staged copy")
	result := filepath.Join(dir, "termination-log")

	res, stderr, err := runJob(t, bin, jobargs.Args{Op: jobargs.OpRecover, NodeRoot: node, TerminationLog: result})
	if err != nil {
		t.Fatalf("recover: %v\n%s", err, stderr)
	}
	if res.Op != jobargs.OpRecover || res.Error != "" {
		t.Errorf("recover result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(node, ".cita-node-job-restore")); !os.IsNotExist(err) {
		t.Errorf("staging directory left: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(node, "chain_data/000001.sst")); string(b) != "live blocks" {
		t.Errorf("live data changed: %q", b)
	}

	res, _, err = runJob(t, bin, jobargs.Args{Op: jobargs.OpRecover, NodeRoot: node, TerminationLog: result})
	if err != nil || res.Warning != "" {
		t.Errorf("recover of a clean node root: %v, %+v", err, res)
	}
}
