// Command localcluster starts the local control plane of package localcluster
// and keeps it up until SIGINT or SIGTERM, for the demo and for poking at by
// hand. It prints the KUBECONFIG to use once the cluster is ready.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

func main() {
	var opts localcluster.Options
	var leaveNodes, pidFile string
	flag.StringVar(&opts.BinDir, "bin-dir", "", "directory with the control plane binaries (default: the repository's bin/)")
	flag.StringVar(&opts.WorkDir, "work-dir", "", "directory for certificates, kubeconfig, etcd data, logs and volumes; kept on exit (default: a temporary directory, removed on exit)")
	flag.IntVar(&opts.Nodes, "nodes", 1, "number of kwok nodes")
	flag.StringVar(&opts.LeavePodsWithLabel, "leave-pods-with-label", localcluster.JobPodLabel, "kwok leaves pods carrying this label key to a runner (empty: kwok runs all pods)")
	flag.StringVar(&leaveNodes, "leave-pods-on-nodes", "", "comma-separated extra nodes whose pods kwok leaves to a runner")
	flag.StringVar(&opts.StorageClassName, "storage-class", "standard", "name of the default, provisioning StorageClass")
	flag.StringVar(&pidFile, "pid-file", "", "write this process's pid here once the cluster is up (to stop it: kill -TERM)")
	flag.Parse()
	if leaveNodes != "" {
		opts.LeavePodsOnNodes = strings.Split(leaveNodes, ",")
	}
	opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, pidFile); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts localcluster.Options, pidFile string) error {
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer c.Stop()
	if pidFile != "" {
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return err
		}
		defer os.Remove(pidFile)
	}
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	fmt.Fprintf(os.Stderr, "logs: %s; volumes: %s; stop with Ctrl-C or SIGTERM\n", c.LogDir, c.VolumesDir)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "stopping local cluster")
	return c.Stop()
}
