package e2e

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// operator is the cita-node-operator binary running as its own process, as
// it does in a cluster.
type operator struct {
	bin, kubeconfig, logDir string
	// metricsAddr and healthAddr are loopback addresses chosen at the
	// first start and kept across restarts.
	metricsAddr, healthAddr string
	extraArgs               []string
	proc                    *localcluster.Process
	starts                  int
	// name is the process's POD_NAME, the start of its leader identity.
	name string
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
		"--start-ready-timeout=20s",
		"--v=2",
	}, o.extraArgs...)
	var err error
	o.name = fmt.Sprintf("operator-%p-%d", o, o.starts)
	o.proc, err = localcluster.StartProcess(fmt.Sprintf("operator-%d", o.starts), o.bin, o.logDir, []string{"POD_NAME=" + o.name}, args...)
	return err
}

// leads reports whether the Lease holder is this process (its identity is
// <POD_NAME>_<uuid>).
func (o *operator) leads(holder string) bool {
	return o.proc != nil && strings.HasPrefix(holder, o.name+"_")
}

// kill ends the process at once, as a node failure or OOM kill would.
func (o *operator) kill() {
	if o.proc == nil {
		return
	}
	o.proc.Kill()
	o.proc = nil
}

// stop asks for a graceful shutdown (SIGTERM) and waits for it.
func (o *operator) stop() error {
	if o.proc == nil {
		return nil
	}
	graceful := o.proc.Stop(30 * time.Second)
	o.proc = nil
	if !graceful {
		return fmt.Errorf("operator did not stop within 30s of SIGTERM")
	}
	return nil
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
