package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

const opTimeout = 90 * time.Second

// TestEveryKindOnEveryDeployMethod: Backup, Snapshot, BlockHeightFallback,
// ChangeOwner and Restore (from the Backup, after the node's chain state was
// damaged) each reach Complete on a node of each deploy method; the node is
// at 0 replicas while the Job runs and back at its replicas after; the
// events tell the story; the restore gives back the original bytes.
func TestEveryKindOnEveryDeployMethod(t *testing.T) {
	need(t)
	deploy := map[string]func(t *testing.T, ns string) *node{
		"cloud-config": func(t *testing.T, ns string) *node { return deployCloudConfig(t, ns, "cc-chain", "cc-chain-node0") },
		"helm":         func(t *testing.T, ns string) *node { return deployHelm(t, ns, "helm-chain", 2)[1] },
		"python":       func(t *testing.T, ns string) *node { return deployPython(t, ns, "py-chain", "py-chain-node0") },
	}
	for method, dep := range deploy {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t, "e2e-kinds-"+method)
			n := dep(t, ns)
			watchStops(t, n)
			before := digest(t, n.root(t), "chain_data", "data")
			identity := digest(t, n.root(t), "kms.db", "raft-data-dir")

			run := func(kind, name, spec string) *citav1.OperationStatus {
				t.Helper()
				mustApply(t, fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: %s\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  chain: %s\n  node: %s\n  deployMethod: %s\n%s",
					kind, name, ns, n.chain, n.name, method, spec))
				st := waitOp(t, kind, ns, name, opTimeout)
				mustComplete(t, st)
				if r := n.specReplicas(t); r != n.replicas {
					t.Fatalf("after %s the node is at %d replicas, want %d", kind, r, n.replicas)
				}
				if a := lockAnnotations(n.annotations(t)); len(a) > 0 {
					t.Fatalf("after %s the workload still carries %v", kind, a)
				}
				reasons := strings.Join(eventReasons(t, ns, name), ",")
				if c := meta.FindStatusCondition(st.Conditions, citav1.ConditionNodeReady); c == nil || c.Status != metav1.ConditionTrue {
					t.Errorf("after %s: NodeReady %+v, want True (the node seen Ready again)", kind, c)
				}
				for _, want := range []string{"Normal Stopping", "Normal Running", "Normal NodeReady", "Normal Done"} {
					if !strings.Contains(reasons, want) {
						t.Errorf("%s %s: no %q event in %s", kind, name, want, reasons)
					}
				}
				return st
			}

			run("Backup", "bk", "")
			bk, err := env.cita.CitacloudV1().Backups(ns).Get(env.ctx, "bk", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if bk.Status.Actual <= 0 || bk.Status.Files <= 0 || !strings.HasPrefix(bk.Status.Checksum, "sha256:") || bk.Status.PVC != "bk" {
				t.Fatalf("backup status %+v", bk.Status.VolumeStatus)
			}
			if got := digestBackup(t, ns, "bk"); !cmp.Equal(got, before) {
				t.Fatalf("backup content differs from the node's chain state:\n%s", cmp.Diff(before, got))
			}

			run("Snapshot", "sn", "  blockHeight: 30\n")
			run("BlockHeightFallback", "fb", "  blockHeight: 20\n")
			run("ChangeOwner", "co", "  uid: 1234\n  gid: 1234\n")
			if st := ownerOf(t, filepath.Join(n.root(t), "chain_data", "CURRENT")); st != "1234:1234" {
				t.Fatalf("chown: CURRENT owned by %s", st)
			}

			// Damage the chain state, then restore the backup.
			if err := os.WriteFile(filepath.Join(n.root(t), "chain_data", "000001.sst"), []byte("corrupted"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(n.root(t), "data")); err != nil {
				t.Fatal(err)
			}
			st := run("Restore", "rs", "  backup: bk\n")
			_ = st
			after := digest(t, n.root(t), "chain_data", "data")
			if diff := cmp.Diff(before, withoutFallbackMarks(after)); diff != "" {
				t.Fatalf("restore did not give back the backed-up bytes (-before +after):\n%s", diff)
			}
			if got := digest(t, n.root(t), "kms.db", "raft-data-dir"); !cmp.Equal(got, identity) {
				t.Fatal("restore touched the node's identity (kms.db, consensus WAL)")
			}
			rs, _ := env.cita.CitacloudV1().Restores(ns).Get(env.ctx, "rs", metav1.GetOptions{})
			if rs.Status.Verified == nil || !*rs.Status.Verified {
				t.Fatalf("restore verified %v", rs.Status.Verified)
			}
		})
	}
}

func lockAnnotations(a map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		if strings.HasPrefix(k, "citacloud.rivtower.com/") {
			out[k] = v
		}
	}
	return out
}

func digestBackup(t *testing.T, ns, pvc string) map[string]string {
	t.Helper()
	dir := volumeDir(t, ns, pvc)
	return digest(t, dir, "chain_data", "data")
}

// withoutFallbackMarks drops what the fake cloud-op's fallback wrote, which
// the restore is not expected to remove if the backup predates it.
func withoutFallbackMarks(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !slices.Contains([]string{"chain_data/FALLBACK_HEIGHT"}, k) {
			out[k] = v
		}
	}
	return out
}

// watchStops records, through the runner, that every Job pod of the node's
// operations started while the node had no pod and was at 0 replicas —
// unless the operation is Direct.
func watchStops(t *testing.T, n *node) {
	t.Helper()
	onJobPodStart(n.ns, func(podName string) {
		if r := n.specReplicas(t); r != 0 {
			t.Errorf("Job pod %s started while %s was at %d replicas", podName, n.workload, r)
		}
		for _, p := range n.pods(t) {
			t.Errorf("Job pod %s started while the node's pod %s existed", podName, p.Name)
		}
	})
	t.Cleanup(func() { onJobPodStart(n.ns, nil) })
	_ = nodeops.AnnotationHolder
}
