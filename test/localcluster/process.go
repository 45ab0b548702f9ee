package localcluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Process is a binary running in its own process group, its output in a
// log file: a control plane component here, the operator in the e2e suite,
// the bench and the demo. Its group is what Stop and Kill reach, so that
// anything it forked goes with it, and a Ctrl-C in the demo's terminal
// reaches only the launcher, which then stops its processes in order.
type Process struct {
	// Name of the process; its log is LogFile, <logDir>/<Name>.log.
	Name, LogFile string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// StartProcess runs binary with args, env added to this process's
// environment, its output appended to <logDir>/<name>.log.
func StartProcess(name, binary, logDir string, env []string, args ...string) (*Process, error) {
	logFile := filepath.Join(logDir, name+".log")
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the launcher dies without stopping it (go test's -timeout panic,
		// SIGKILL), the kernel kills the process instead of leaving an orphan.
		// It fires when the launching OS thread exits; Go only ends threads
		// whose goroutine exits while locked to them, which this package never does.
		Pdeathsig: syscall.SIGKILL,
	}
	fmt.Fprintf(out, "### %s %s %q\n", time.Now().Format(time.RFC3339), binary, args)
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogFile: logFile, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's (and its group's) id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process is gone, with its exit error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		if p.err == nil {
			return true, errors.New("exited with status 0")
		}
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace, and
// waits; it reports whether the process ended within grace.
func (p *Process) Stop(grace time.Duration) (graceful bool) {
	pgid := p.Pid()
	select {
	case <-p.done:
		// The leader is gone; members of its group may not be.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return true
	default:
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	graceful = true
	select {
	case <-p.done:
	case <-time.After(grace):
		graceful = false
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return graceful
}

// Kill ends the process group at once (SIGKILL), as a node failure or an
// OOM kill would, and waits for the process.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// freePorts returns n distinct loopback ports that were free a moment ago. All
// listeners stay open until every port is chosen so that none is handed out twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
func FreePorts(n int) ([]int, error) { return freePorts(n) }
