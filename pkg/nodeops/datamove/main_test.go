package datamove

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests that need a real SIGKILL re-execute the test binary as a child that runs one
// operation (helperEnv says which) and kill that child.
const helperEnv = "DATAMOVE_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	os.Exit(m.Run())
}

// runHelper runs in the child. Its operations announce progress through files so the parent
// kills at a known point, and pause at that point so the kill lands there.
func runHelper(spec string) int {
	op, arg, _ := strings.Cut(spec, ":")
	ctx := context.Background()
	var err error
	switch op {
	case "restore-slowly":
		// Pause after every copied file, so the parent can kill mid-copy.
		testPoint = func(point string) {
			if point == "file copied" {
				time.Sleep(2 * time.Millisecond)
			}
		}
		src, node, _ := strings.Cut(arg, "|")
		_, err = Restore(ctx, RestoreOptions{Source: src, NodeRoot: node})
	case "restore-die-after-first-swap":
		testPoint = func(point string) {
			if strings.HasPrefix(point, "swapped ") {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
		src, node, _ := strings.Cut(arg, "|")
		_, err = Restore(ctx, RestoreOptions{Source: src, NodeRoot: node})
	case "fallback":
		// arg: cloud-op path | node root
		path, node, _ := strings.Cut(arg, "|")
		var c *CloudOp
		if c, err = DetectCloudOp(ctx, path, os.Stderr); err == nil {
			_, err = Fallback(ctx, c, CloudOpParams{Height: 5, NodeRoot: node, ConfigPath: "/c", Crypto: "sm", Consensus: "raft"})
		}
	default:
		err = fmt.Errorf("unknown helper %q", op)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startHelper starts the child in its own process group, so killing the group also kills
// what it started (cloud-op), as the kubelet does with a container.
func startHelper(t *testing.T, spec string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+spec)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	return cmd
}

func killHelper(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die of SIGKILL: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
