package e2e

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestOperatorRunsAsTheChartsServiceAccount: the scenarios of this suite run
// with the operator authenticated as the chart's ServiceAccount (so its RBAC
// is proven sufficient), and it holds the leader Lease in its namespace.
func TestOperatorRunsAsTheChartsServiceAccount(t *testing.T) {
	need(t)
	eventually(t, opTimeout, "the operator holding its Lease", func() (bool, string) {
		l, err := env.kube.CoordinationV1().Leases("cita").Get(env.ctx, "cita-node-operator", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", "no holder"
	})
	out, err := kubectl("--kubeconfig", env.operator.kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if err != nil || strings.TrimSpace(out) != "system:serviceaccount:cita:cita-node-operator" {
		t.Fatalf("the operator authenticates as %q (%v)", out, err)
	}
	out, _ = kubectl("--kubeconfig", env.operator.kubeconfig, "auth", "can-i", "get", "secrets", "-A")
	if strings.TrimSpace(out) != "no" {
		t.Fatalf("the operator's identity may read secrets: %q", out)
	}
}
