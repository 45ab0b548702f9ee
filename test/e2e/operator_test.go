package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// operator is the cita-node-operator binary running as its own process, as
// it does in a cluster.
type operator struct {
	bin, kubeconfig, logDir string
	// metricsAddr and healthAddr are loopback addresses chosen at the
	// first start and kept across restarts.
	metricsAddr, healthAddr string
	extraArgs               []string
	cmd                     *exec.Cmd
	starts                  int
	exited                  chan struct{}
}

// jobImage is what the operator's Jobs run; the runner executes
// bin/cita-node-job whatever the image, except images naming "unpullable".
const jobImage = "e2e.local/cita-node-operator-job:e2e"

func (o *operator) start() error {
	o.starts++
	if o.metricsAddr == "" {
		var err error
		if o.metricsAddr, err = freeAddr(); err != nil {
			return err
		}
		if o.healthAddr, err = freeAddr(); err != nil {
			return err
		}
	}
	logFile, err := os.Create(filepath.Join(o.logDir, fmt.Sprintf("operator-%d.log", o.starts)))
	if err != nil {
		return err
	}
	args := append([]string{
		"--kubeconfig=" + o.kubeconfig,
		"--leader-elect=true",
		"--leader-elect-namespace=cita",
		"--leader-elect-lease-duration=4s",
		"--leader-elect-renew-deadline=3s",
		"--leader-elect-retry-period=500ms",
		"--job-image=" + jobImage,
		"--metrics-bind-address=" + o.metricsAddr,
		"--health-probe-bind-address=" + o.healthAddr,
		"--stop-grace-period=10s",
		"--stop-timeout=60s",
		"--job-start-timeout=15s",
		"--v=2",
	}, o.extraArgs...)
	o.cmd = exec.Command(o.bin, args...)
	o.cmd.Stdout, o.cmd.Stderr = logFile, logFile
	o.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := o.cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	o.exited = make(chan struct{})
	go func() {
		_ = o.cmd.Wait()
		logFile.Close()
		close(o.exited)
	}()
	return nil
}

// kill ends the process at once, as a node failure or OOM kill would.
func (o *operator) kill() {
	if o.cmd == nil || o.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-o.cmd.Process.Pid, syscall.SIGKILL)
	<-o.exited
	o.cmd = nil
}

// stop asks for a graceful shutdown (SIGTERM) and waits for it.
func (o *operator) stop() error {
	if o.cmd == nil {
		return nil
	}
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.exited:
		o.cmd = nil
		return nil
	case <-time.After(30 * time.Second):
		o.kill()
		return fmt.Errorf("operator did not stop within 30s of SIGTERM")
	}
}

func (o *operator) restart() error {
	o.kill()
	return o.start()
}

// freeAddr is a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
