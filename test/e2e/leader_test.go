package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

// TestStandbyTakesOverAnInFlightOperation: two operator processes, as the
// chart runs them; only the Lease holder reconciles. The leader is killed
// while an operation's Job runs; the standby takes the Lease and finishes
// the operation, within the lease duration plus the operation.
func TestStandbyTakesOverAnInFlightOperation(t *testing.T) {
	need(t)
	standby := &operator{bin: env.operator.bin, kubeconfig: env.operator.kubeconfig, logDir: filepath.Join(env.logDir, "standby")}
	if err := os.MkdirAll(standby.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := standby.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.kill() })

	ns := namespace(t, "e2e-leader")
	n := deployCloudConfig(t, ns, "ld", "ld-node0")
	holder := func() string {
		l, err := env.kube.CoordinationV1().Leases("cita").Get(env.ctx, "cita-node-operator", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	eventually(t, opTimeout, "a leader", func() (bool, string) { return holder() != "", "none" })
	leader, other := env.operator, standby
	if standby.leads(holder()) {
		leader, other = standby, env.operator
	}
	if !leader.leads(holder()) {
		t.Fatalf("the Lease is held by %q, neither operator process", holder())
	}

	mustApply(t, fallbackYAML(ns, "takeover", n, slowHeight, ""))
	eventually(t, opTimeout, "the Job running", func() (bool, string) {
		p, err := env.kube.CoreV1().Pods(ns).List(env.ctx, metav1.ListOptions{LabelSelector: "job-name=takeover-fallback"})
		return err == nil && len(p.Items) > 0 && p.Items[0].Status.Phase == "Running", "not yet"
	})
	// The standby has not reconciled anything: its log shows no worker.
	if log := readLog(t, other); strings.Contains(log, "Started workers") {
		t.Fatalf("the standby runs workers while the other process leads:\n%s", log)
	}
	killedAt := time.Now()
	leader.kill()
	st := waitOp(t, "BlockHeightFallback", ns, "takeover", opTimeout)
	mustComplete(t, st)
	took := time.Since(killedAt)
	// Lease duration 4s (operator_test.go) + the rest of a 4s cloud-op run + slack.
	if took > 30*time.Second {
		t.Errorf("the standby finished %s after the leader died", took)
	}
	if holder() == "" || !other.leads(holder()) {
		t.Errorf("the Lease is held by %q, not the standby", holder())
	}
	if r := n.specReplicas(t); r != 1 {
		t.Fatalf("node at %d replicas", r)
	}
	jobs, _ := env.kube.BatchV1().Jobs(ns).List(env.ctx, metav1.ListOptions{})
	if len(jobs.Items) != 1 {
		t.Fatalf("%d Jobs", len(jobs.Items))
	}
	// Leave the suite with its usual operator leading.
	if other == standby {
		standby.kill()
		if err := env.operator.start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("the standby finished the operation %s after the leader was killed", took.Round(100*time.Millisecond))
}

func readLog(t *testing.T, o *operator) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(o.logDir, fmt.Sprintf("operator-%d.log", o.starts)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestResultSurvivesATTLShorterThanTheOperatorsAbsence: the Job's TTL is 1s
// and the operator is down for 5s across the Job's completion; the TTL only
// starts once the result is recorded, so the operator finds the Job, records
// its result, and never runs a second one.
func TestResultSurvivesATTLShorterThanTheOperatorsAbsence(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-ttl")
	n := deployPython(t, ns, "ttl", "ttl-node0")
	mustApply(t, fallbackYAML(ns, "short-ttl", n, jobDelay(2), "  ttlSecondsAfterFinished: 1\n"))
	eventually(t, opTimeout, "the Job running", func() (bool, string) {
		p, err := env.kube.CoreV1().Pods(ns).List(env.ctx, metav1.ListOptions{LabelSelector: "job-name=short-ttl-fallback"})
		return err == nil && len(p.Items) > 0 && p.Items[0].Status.Phase == "Running", "not yet"
	})
	env.operator.kill()
	eventually(t, opTimeout, "the Job complete", func() (bool, string) {
		j, err := env.kube.BatchV1().Jobs(ns).Get(env.ctx, "short-ttl-fallback", metav1.GetOptions{})
		return err == nil && jobDone(j.Status.Conditions), "running"
	})
	time.Sleep(5 * time.Second)
	if _, err := env.kube.BatchV1().Jobs(ns).Get(env.ctx, "short-ttl-fallback", metav1.GetOptions{}); err != nil {
		t.Fatalf("the finished Job is gone while its result was not recorded: %v", err)
	}
	if err := env.operator.start(); err != nil {
		t.Fatal(err)
	}
	st := waitOp(t, "BlockHeightFallback", ns, "short-ttl", opTimeout)
	mustComplete(t, st)
	if st.Job == nil || !strings.Contains(st.Job.Result, `"op":"fallback"`) {
		t.Fatalf("result not kept: %+v", st.Job)
	}
	eventually(t, opTimeout, "the TTL to delete the Job", func() (bool, string) {
		_, err := env.kube.BatchV1().Jobs(ns).Get(env.ctx, "short-ttl-fallback", metav1.GetOptions{})
		return notFound(err), fmt.Sprint(err)
	})
	if c := runnerStarts(ns, "short-ttl-fallback"); c != 1 {
		t.Fatalf("the Job's container ran %d times", c)
	}
	if r := n.specReplicas(t); r != 1 {
		t.Fatalf("node at %d replicas", r)
	}
	_ = citav1.PhaseComplete
}
