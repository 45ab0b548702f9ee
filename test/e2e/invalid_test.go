package e2e

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

// TestSchemaRejectsBadInput: the real apiserver refuses invalid CRs with a
// message naming the field.
func TestSchemaRejectsBadInput(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-schema")
	head := func(kind string) string {
		return fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: %s\nmetadata:\n  name: bad\n  namespace: %s\nspec:\n", kind, ns)
	}
	cases := map[string]struct{ manifest, want string }{
		"missing node":          {head("Backup") + "  chain: c\n  deployMethod: helm\n", "spec.node: Required value"},
		"unknown deployMethod":  {head("Backup") + "  chain: c\n  node: nd\n  deployMethod: docker\n", `spec.deployMethod: Unsupported value: "docker"`},
		"negative blockHeight":  {head("BlockHeightFallback") + "  chain: c\n  node: nd\n  deployMethod: helm\n  blockHeight: -1\n", "spec.blockHeight: Invalid value: -1"},
		"unknown pullPolicy":    {head("ChangeOwner") + "  chain: c\n  node: nd\n  deployMethod: helm\n  pullPolicy: Sometimes\n", "spec.pullPolicy: Unsupported value"},
		"negative uid":          {head("ChangeOwner") + "  chain: c\n  node: nd\n  deployMethod: helm\n  uid: -5\n", "spec.uid: Invalid value: -5"},
		"restore with both":     {head("Restore") + "  chain: c\n  node: nd\n  deployMethod: helm\n  backup: a\n  snapshot: b\n", "exactly one of spec.backup or spec.snapshot"},
		"restore with neither":  {head("Restore") + "  chain: c\n  node: nd\n  deployMethod: helm\n", "exactly one of spec.backup or spec.snapshot"},
		"switchover same nodes": {head("Switchover") + "  chain: c\n  sourceNode: nd\n  destNode: nd\n", "spec.destNode: Invalid value"},
		"unknown field":         {head("Backup") + "  chain: c\n  node: nd\n  deployMethod: helm\n  nodee: x\n", `unknown field "spec.nodee"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := applyYAML(t, tc.manifest)
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("error does not say %q:\n%s", tc.want, out)
			}
		})
	}
	t.Run("spec is immutable", func(t *testing.T) {
		mustApply(t, head("Backup")+"  chain: c\n  node: missing\n  deployMethod: helm\n")
		out, err := applyYAML(t, head("Backup")+"  chain: c\n  node: other\n  deployMethod: helm\n")
		if err == nil || !strings.Contains(out, "spec is immutable after creation") {
			t.Fatalf("spec change: %v\n%s", err, out)
		}
	})
}

// TestControllerRejectsBadInput: CRs the schema accepts but the cluster
// contradicts end Failed with a reason, and no workload is touched.
func TestControllerRejectsBadInput(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-reject")
	n := deployCloudConfig(t, ns, "rj", "rj-node0")
	// A StatefulSet that deletes its PVCs when scaled.
	del := deployCloudConfig(t, ns, "rj", "rj-deletes")
	sts, _ := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, del.workload, metav1.GetOptions{})
	sts.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType, WhenScaled: appsv1.DeletePersistentVolumeClaimRetentionPolicyType}
	if _, err := env.kube.AppsV1().StatefulSets(ns).Update(env.ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The StatefulSet controller keeps writing status; a write by the operator
	// would change the spec (generation) or the annotations.
	genBefore := map[string]int64{}
	for _, w := range []*node{n, del} {
		s, _ := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, w.workload, metav1.GetOptions{})
		genBefore[w.workload] = s.Generation
	}
	mustApply(t, fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: Backup\nmetadata:\n  name: b-incomplete\n  namespace: %s\nspec:\n  chain: rj\n  node: nobody\n  deployMethod: cloud-config\n", ns))
	cases := map[string]struct{ kind, manifest, want string }{
		"missing node":                {"BlockHeightFallback", fallbackYAML(ns, "missing", &node{chain: "rj", name: "ghost", method: citav1.DeployMethodCloudConfig}, 1, ""), "node StatefulSet " + ns + "/ghost does not exist"},
		"wrong deploy method":         {"BlockHeightFallback", fallbackYAML(ns, "wrong", &node{chain: "rj", name: "rj-node0", method: citav1.DeployMethodPython}, 1, ""), "is a StatefulSet, not a Deployment"},
		"whenScaled Delete":           {"BlockHeightFallback", fallbackYAML(ns, "deletes", del, 1, ""), "whenScaled: Delete"},
		"restore of a missing backup": {"Restore", restoreYAML(ns, "r-missing", n, "nope"), "Backup " + ns + "/nope does not exist"},
		"restore of a failed backup":  {"Restore", restoreYAML(ns, "r-incomplete", n, "b-incomplete"), "Backup b-incomplete is not Complete"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			mustApply(t, tc.manifest)
			crName := strings.Fields(strings.SplitN(tc.manifest, "name: ", 2)[1])[0]
			st := waitOp(t, tc.kind, ns, crName, opTimeout)
			if st.Status != citav1.PhaseFailed || !strings.Contains(st.Message, tc.want) {
				t.Fatalf("status %s: %q, want Failed with %q", st.Status, st.Message, tc.want)
			}
			if reasons := strings.Join(eventReasons(t, ns, crName), ","); !strings.Contains(reasons, "Warning InvalidInput") {
				t.Errorf("no Warning InvalidInput event: %s", reasons)
			}
		})
	}
	for _, w := range []*node{n, del} {
		s, _ := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, w.workload, metav1.GetOptions{})
		if s.Generation != genBefore[w.workload] || len(lockAnnotations(s.Annotations)) > 0 || *s.Spec.Replicas != 1 {
			t.Errorf("StatefulSet %s was touched: generation %d → %d, annotations %v, replicas %d", w.workload, genBefore[w.workload], s.Generation, s.Annotations, *s.Spec.Replicas)
		}
	}
	if _, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(env.ctx, del.claim, metav1.GetOptions{}); err != nil {
		t.Fatalf("the whenScaled: Delete node's PVC: %v", err)
	}
	_ = types.UID("")
}

func restoreYAML(ns, name string, n *node, backup string) string {
	return fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: Restore\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  chain: %s\n  node: %s\n  deployMethod: %s\n  backup: %s\n", name, ns, n.chain, n.name, n.method, backup)
}
