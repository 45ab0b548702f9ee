package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

// TestReadmeSamples: the seven documents of the original README apply
// unchanged with kubectl, the apiserver stores their defaults, and against
// nodes shaped as they describe each one reaches Complete: backup before
// its restore, snapshot before its restore.
func TestReadmeSamples(t *testing.T) {
	need(t)
	ns := namespace(t, "app-rivspace")
	// The nodes the samples name.
	cc := deployCloudConfig(t, ns, "chain-734116911817822208", "chain-734116911817822208-0")
	py := deployPython(t, ns, "chain-734116911817822208", "chain-734116911817822208-0")
	zen0 := deployCloudConfig(t, ns, "test-chain-zenoh-bft", "test-chain-zenoh-bft-node0")
	zen1 := deployCloudConfig(t, ns, "test-chain-zenoh-bft", "test-chain-zenoh-bft-node1")

	samples := filepath.Join(env.repo, "manifests", "samples")
	apply := func(file string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(samples, file))
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, string(data))
	}
	order := []struct {
		file, kind, name string
		n                *node
	}{
		{"1-blockheightfallback.yaml", "BlockHeightFallback", "blockheightfallback-sample", cc},
		{"2-backup.yaml", "Backup", "backup-sample", py},
		{"4-restore-backup.yaml", "Restore", "restore-sample", py},
		{"3-snapshot.yaml", "Snapshot", "snapshot-sample", zen0},
		{"5-restore-snapshot.yaml", "Restore", "restore-sample-cloud-config", zen0},
		{"6-switchover.yaml", "Switchover", "switchover-sample", nil},
		{"7-changeowner.yaml", "ChangeOwner", "changeowner-sample", zen0},
	}
	for _, s := range order {
		apply(s.file)
		st := waitOp(t, s.kind, ns, s.name, opTimeout)
		mustComplete(t, st)
		reasons := strings.Join(eventReasons(t, ns, s.name), ",")
		if s.kind != "Switchover" && !strings.Contains(reasons, "Warning JobImageReplaced") {
			t.Errorf("%s: the original job image was not reported as replaced: %s", s.name, reasons)
		}
		if s.n != nil && s.n.specReplicas(t) != s.n.replicas {
			t.Errorf("%s: node %s left at %d replicas", s.name, s.n.name, s.n.specReplicas(t))
		}
	}

	// Defaults stored by the apiserver, visible to kubectl.
	co, err := env.cita.CitacloudV1().Snapshots(ns).Get(env.ctx, "snapshot-sample", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if co.Spec.Action != citav1.ActionStopAndStart {
		t.Errorf("Snapshot sample action %q, want the default StopAndStart", co.Spec.Action)
	}
	sw, _ := env.cita.CitacloudV1().Switchovers(ns).Get(env.ctx, "switchover-sample", metav1.GetOptions{})
	if a, b := accountOf(t, ns, zen0.name), accountOf(t, ns, zen1.name); a != zen1.name+"-account" || b != zen0.name+"-account" || sw.Status.Status != citav1.PhaseComplete {
		t.Errorf("switchover: node0 uses %s, node1 uses %s", a, b)
	}
	out, err := kubectl("get", "cita", "-n", ns)
	if err != nil || !strings.Contains(out, "Complete") || !strings.Contains(out, "blockheightfallback.citacloud.rivtower.com/blockheightfallback-sample") {
		t.Errorf("kubectl get cita: %v\n%s", err, out)
	}
	out, err = kubectl("get", "bhf", "-n", ns)
	if err != nil || !strings.Contains(out, "CHAIN") || !strings.Contains(out, "STEP") {
		t.Errorf("kubectl get bhf: %v\n%s", err, out)
	}
	_ = time.Second
}

func accountOf(t *testing.T, ns, sts string) string {
	t.Helper()
	s, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, sts, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range s.Spec.Template.Spec.Volumes {
		if v.Name == "node-account" && v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}
