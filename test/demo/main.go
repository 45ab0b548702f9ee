// Command demo runs the operator for real on this machine: a local control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kwok), the chart installed with helm, the operator authenticated as the
// chart's ServiceAccount, a kubelet stand-in that really runs the
// operations' Job pods, demo nodes of the three deploy methods, and the
// original README's seven samples applied unchanged. It prints what kubectl
// shows, then keeps everything running until SIGTERM (make demo-down).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned"
	"github.com/cita-cloud/cita-node-operator/test/fixtures"
	"github.com/cita-cloud/cita-node-operator/test/jobrunner"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

const ns = "app-rivspace"

type demo struct {
	ctx        context.Context
	repo, bin  string
	workDir    string
	kubeconfig string
	kube       kubernetes.Interface
}

func main() {
	d := &demo{}
	flag.StringVar(&d.workDir, "work-dir", "/tmp/cita-node-operator-demo", "where the cluster, logs and the report live")
	flag.StringVar(&d.bin, "bin", "", "the repository's bin/ (default: found from the working directory)")
	pidFile := flag.String("pid-file", "", "write this process's pid here (make demo-down signals it)")
	flag.Parse()
	if *pidFile != "" {
		if err := os.WriteFile(*pidFile, []byte(fmt.Sprint(os.Getpid())), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			os.Exit(1)
		}
		defer os.Remove(*pidFile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d.ctx = ctx
	if err := d.run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		stop()
		os.Exit(1) // run has stopped everything it started
	}
}

func (d *demo) say(format string, args ...any) {
	fmt.Printf("[demo] "+format+"\n", args...)
}

func (d *demo) run() error {
	var err error
	if d.bin == "" {
		if d.bin, err = localcluster.DefaultBinDir(); err != nil {
			return err
		}
	}
	d.repo = filepath.Dir(d.bin)
	if missing := localcluster.MissingBinaries(d.bin); len(missing) > 0 {
		return fmt.Errorf("missing in %s: %v (make tools)", d.bin, missing)
	}
	os.Remove(filepath.Join(d.workDir, "ready"))
	d.say("starting the local control plane in %s", d.workDir)
	cluster, err := localcluster.Start(d.ctx, localcluster.Options{
		BinDir: d.bin, WorkDir: filepath.Join(d.workDir, "cluster"), Nodes: 2,
		LeavePodsWithLabel: localcluster.JobPodLabel,
	})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	d.kubeconfig = cluster.Kubeconfig
	if d.kube, err = kubernetes.NewForConfig(cluster.RESTConfig()); err != nil {
		return err
	}

	d.say("helm install cita-node-operator (CRDs, ServiceAccount, RBAC; the Deployment at 0 replicas: no container image can run here)")
	if out, err := d.tool("helm", "install", "cita-node-operator", filepath.Join(d.repo, "charts/cita-node-operator"),
		"--namespace", "cita", "--create-namespace", "--set", "replicaCount=0", "--kubeconfig", d.kubeconfig); err != nil {
		return fmt.Errorf("helm install: %v\n%s", err, out)
	}
	if out, err := d.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return fmt.Errorf("CRDs: %v\n%s", err, out)
	}
	// Operations are applied at once: wait until the chart's finalizer
	// policy works rather than race its 503s (see fixtures.WaitFinalizerPolicy).
	cita, err := versioned.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	if _, err := fixtures.WaitFinalizerPolicy(d.ctx, cita, "default", true, time.Minute); err != nil {
		return err
	}

	d.say("starting the Job pod runner (a kubelet stand-in that runs cita-node-job for real)")
	runner, err := jobrunner.Start(d.ctx, jobrunner.Options{Cluster: cluster, JobBinary: filepath.Join(d.bin, "cita-node-job")})
	if err != nil {
		return err
	}
	defer runner.Stop()

	opKubeconfig := filepath.Join(d.workDir, "operator.kubeconfig")
	if err := localcluster.ImpersonatingKubeconfig(d.kubeconfig, opKubeconfig, "cita", "cita-node-operator"); err != nil {
		return err
	}
	// A fresh log for this demo (StartProcess appends).
	if err := os.Remove(filepath.Join(d.workDir, "operator.log")); err != nil && !os.IsNotExist(err) {
		return err
	}
	operator, err := localcluster.StartProcess("operator", filepath.Join(d.bin, "cita-node-operator"), d.workDir, nil,
		"--kubeconfig="+opKubeconfig,
		"--leader-elect-namespace=cita", "--job-image=ghcr.io/cita-cloud/cita-node-operator-job:demo",
		"--metrics-bind-address=127.0.0.1:18080", "--health-probe-bind-address=127.0.0.1:18081", "--v=2")
	if err != nil {
		return err
	}
	d.say("starting the operator as system:serviceaccount:cita:cita-node-operator (log: %s)", operator.LogFile)
	defer operator.Stop(30 * time.Second)

	if err := d.nodes(); err != nil {
		return err
	}
	if err := d.samples(); err != nil {
		return err
	}
	report, err := d.report()
	if err != nil {
		return err
	}
	fmt.Print(report)
	if err := os.WriteFile(filepath.Join(d.workDir, "report.txt"), []byte(report), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.workDir, "ready"), nil, 0o644); err != nil {
		return err
	}
	<-d.ctx.Done()
	d.say("stopping")
	return nil
}

func (d *demo) nodes() error {
	if _, err := d.kube.CoreV1().Namespaces().Create(d.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "nas-client-provisioner"}, Provisioner: localcluster.ProvisionerName}
	if _, err := d.kube.StorageV1().StorageClasses().Create(d.ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	dep := &fixtures.Deployer{Client: d.kube, VolumeDir: localcluster.VolumeDir}
	d.say("deploying the nodes the samples name: cloud-config and python chain-734116911817822208-0, cloud-config test-chain-zenoh-bft-node0/1; and a helm chain demo-helm-chain")
	if _, err := dep.CloudConfig(d.ctx, ns, "chain-734116911817822208", "chain-734116911817822208-0"); err != nil {
		return err
	}
	if _, err := dep.Python(d.ctx, ns, "chain-734116911817822208", "chain-734116911817822208-0"); err != nil {
		return err
	}
	for _, n := range []string{"test-chain-zenoh-bft-node0", "test-chain-zenoh-bft-node1"} {
		if _, err := dep.CloudConfig(d.ctx, ns, "test-chain-zenoh-bft", n); err != nil {
			return err
		}
	}
	_, err := dep.Helm(d.ctx, ns, "demo-helm-chain", 2)
	return err
}

// samples applies the README's samples unchanged, each once the one it
// depends on is Complete, then a fallback on the helm chain.
func (d *demo) samples() error {
	files := []struct{ file, resource, name string }{
		{"1-blockheightfallback.yaml", "blockheightfallback", "blockheightfallback-sample"},
		{"2-backup.yaml", "backup", "backup-sample"},
		{"4-restore-backup.yaml", "restore", "restore-sample"},
		{"3-snapshot.yaml", "snapshot", "snapshot-sample"},
		{"5-restore-snapshot.yaml", "restore", "restore-sample-cloud-config"},
		{"6-switchover.yaml", "switchover", "switchover-sample"},
		{"7-changeowner.yaml", "changeowner", "changeowner-sample"},
	}
	for _, f := range files {
		path := filepath.Join(d.repo, "manifests/samples", f.file)
		d.say("kubectl apply -f %s", filepath.Join("manifests/samples", f.file))
		if out, err := d.kubectl("apply", "-f", path); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		if out, err := d.kubectl("wait", "-n", ns, "--timeout=120s", "--for=jsonpath={.status.step}=Done", f.resource+"/"+f.name); err != nil {
			return fmt.Errorf("%s did not finish: %v\n%s", f.name, err, out)
		}
	}
	helmFallback := `apiVersion: citacloud.rivtower.com/v1
kind: BlockHeightFallback
metadata:
  name: helm-fallback
  namespace: app-rivspace
spec:
  chain: demo-helm-chain
  node: demo-helm-chain-1
  blockHeight: 100
  deployMethod: helm
`
	d.say("kubectl apply a BlockHeightFallback on the helm chain's node demo-helm-chain-1")
	cmd := d.command("kubectl", "--kubeconfig", d.kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(helmFallback)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	out, err := d.kubectl("wait", "-n", ns, "--timeout=120s", "--for=jsonpath={.status.step}=Done", "blockheightfallback/helm-fallback")
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

func (d *demo) report() (string, error) {
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "cita", "-n", ns},
		{"get", "statefulsets,deployments", "-n", ns},
		{"get", "pvc", "-n", ns},
	} {
		out, err := d.kubectl(args...)
		if err != nil {
			return "", fmt.Errorf("kubectl %v: %v\n%s", args, err, out)
		}
		fmt.Fprintf(&b, "\n$ kubectl %s\n%s", strings.Join(args, " "), out)
	}
	out, _ := d.kubectl("describe", "backup", "backup-sample", "-n", ns)
	if i := strings.Index(out, "Events:"); i >= 0 {
		fmt.Fprintf(&b, "\n$ kubectl describe backup backup-sample -n %s   (its events)\n%s", ns, out[i:])
	}
	fmt.Fprintf(&b, "\nThe cluster keeps running. Explore it with:\n  export KUBECONFIG=%s\n  %s get cita -A\nStop it with: make demo-down\n", d.kubeconfig, filepath.Join(d.bin, "kubectl"))
	return b.String(), nil
}

func (d *demo) command(tool string, args ...string) *exec.Cmd {
	return exec.CommandContext(d.ctx, filepath.Join(d.bin, tool), args...)
}

func (d *demo) tool(tool string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := d.command(tool, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (d *demo) kubectl(args ...string) (string, error) {
	return d.tool("kubectl", append([]string{"--kubeconfig", d.kubeconfig}, args...)...)
}
