package packaging

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func suffixed(names []string, suffix string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + suffix
	}
	return out
}

// operationRules are exactly what the operator does on the API in the watched
// namespace(s) (see templates/_rbac.tpl for why each is needed), on the
// operation kinds' resources.
func operationRules(operations []string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"citacloud.rivtower.com"}, Resources: operations, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{"citacloud.rivtower.com"}, Resources: suffixed(operations, "/status"), Verbs: []string{"update"}},
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets", "deployments"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch", "create", "delete", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "create"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{"citacloud.rivtower.com"}, Resources: []string{"citanodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"citacloud.rivtower.com"}, Resources: []string{"citanodes/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "create", "patch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"create", "patch"}},
	}
}

var (
	nodeRules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
	}
	leaseRules = []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"cita-node-operator"}, Verbs: []string{"get", "update"}},
	}
)

// grant is one role's rules as bound to the operator's ServiceAccount: where
// they apply ("" = cluster-wide) and what they allow.
type grant struct {
	Kind, Name, Scope string
	Rules             []rbacv1.PolicyRule
}

// grants resolves every rendered binding of the operator's ServiceAccount to
// its rules, failing t on a binding to a role the chart does not render, to
// another subject, or a role nothing binds.
func grants(t *testing.T, objs []*unstructured.Unstructured) []grant {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{} // "Kind namespace/name"
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			cr := convert[rbacv1.ClusterRole](t, o)
			if cr.AggregationRule != nil {
				t.Errorf("ClusterRole %s aggregates other roles", cr.Name)
			}
			roles["ClusterRole /"+cr.Name] = cr.Rules
		case "Role":
			r := convert[rbacv1.Role](t, o)
			roles["Role "+r.Namespace+"/"+r.Name] = r.Rules
		}
	}
	bound := map[string]bool{}
	var out []grant
	for _, o := range objs {
		var ref rbacv1.RoleRef
		var subjects []rbacv1.Subject
		scope := ""
		switch o.GetKind() {
		case "ClusterRoleBinding":
			b := convert[rbacv1.ClusterRoleBinding](t, o)
			ref, subjects = b.RoleRef, b.Subjects
		case "RoleBinding":
			b := convert[rbacv1.RoleBinding](t, o)
			ref, subjects, scope = b.RoleRef, b.Subjects, b.Namespace
		default:
			continue
		}
		want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: releaseName, Namespace: releaseNS}}
		if diff := cmp.Diff(want, subjects); diff != "" {
			t.Errorf("%s %s subjects (-want +got):\n%s", o.GetKind(), o.GetName(), diff)
		}
		key := ref.Kind + " /" + ref.Name
		if ref.Kind == "Role" {
			key = "Role " + scope + "/" + ref.Name
		}
		rules, ok := roles[key]
		if !ok {
			t.Errorf("%s %s binds %s, which the chart does not render", o.GetKind(), o.GetName(), key)
			continue
		}
		bound[key] = true
		out = append(out, grant{Kind: ref.Kind, Name: ref.Name, Scope: scope, Rules: rules})
	}
	for key := range roles {
		if !bound[key] {
			t.Errorf("%s is rendered but not bound", key)
		}
	}
	return out
}

// normalize sorts rules and their lists so that rule order does not matter.
func normalize(gs []grant) []grant {
	for i := range gs {
		for j := range gs[i].Rules {
			r := &gs[i].Rules[j]
			for _, l := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
				slices.Sort(l)
			}
		}
		slices.SortFunc(gs[i].Rules, func(a, b rbacv1.PolicyRule) int { return strings.Compare(ruleKey(a), ruleKey(b)) })
	}
	slices.SortFunc(gs, func(a, b grant) int {
		return strings.Compare(a.Kind+a.Scope+"/"+a.Name, b.Kind+b.Scope+"/"+b.Name)
	})
	return gs
}

func ruleKey(r rbacv1.PolicyRule) string {
	return strings.Join([]string{strings.Join(r.APIGroups, ","), strings.Join(r.Resources, ","),
		strings.Join(r.ResourceNames, ","), strings.Join(r.Verbs, ",")}, "|")
}

func TestRBACExactRules(t *testing.T) {
	operations := operationResources(t)
	finalizerRules := append(operationRules(operations), rbacv1.PolicyRule{
		APIGroups: []string{"citacloud.rivtower.com"}, Resources: append(suffixed(operations, "/finalizers"), "citanodes/finalizers"), Verbs: []string{"update"},
	})
	tests := map[string]struct {
		args []string
		want []grant
	}{
		"default values: cluster-wide": {
			want: []grant{
				{Kind: "ClusterRole", Name: "cita-node-operator", Rules: operationRules(operations)},
				{Kind: "ClusterRole", Name: "cita-node-operator-nodes", Rules: nodeRules},
				{Kind: "Role", Name: "cita-node-operator-leader-election", Scope: releaseNS, Rules: leaseRules},
			},
		},
		"watchNamespace: operations only there": {
			args: []string{"--set", "watchNamespace=app-rivspace"},
			want: []grant{
				{Kind: "ClusterRole", Name: "cita-node-operator-nodes", Rules: nodeRules},
				{Kind: "Role", Name: "cita-node-operator", Scope: "app-rivspace", Rules: operationRules(operations)},
				{Kind: "Role", Name: "cita-node-operator-leader-election", Scope: releaseNS, Rules: leaseRules},
			},
		},
		"watchNamespace is the release namespace": {
			args: []string{"--set", "watchNamespace=cita"},
			want: []grant{
				{Kind: "ClusterRole", Name: "cita-node-operator-nodes", Rules: nodeRules},
				{Kind: "Role", Name: "cita-node-operator", Scope: releaseNS, Rules: operationRules(operations)},
				{Kind: "Role", Name: "cita-node-operator-leader-election", Scope: releaseNS, Rules: leaseRules},
			},
		},
		"leader election off: no Lease rules": {
			args: []string{"--set", "replicaCount=1", "--set", "leaderElection.enabled=false"},
			want: []grant{
				{Kind: "ClusterRole", Name: "cita-node-operator", Rules: operationRules(operations)},
				{Kind: "ClusterRole", Name: "cita-node-operator-nodes", Rules: nodeRules},
			},
		},
		"finalizers for OwnerReferencesPermissionEnforcement": {
			args: []string{"--set", "rbac.ownerReferenceFinalizers=true"},
			want: []grant{
				{Kind: "ClusterRole", Name: "cita-node-operator", Rules: finalizerRules},
				{Kind: "ClusterRole", Name: "cita-node-operator-nodes", Rules: nodeRules},
				{Kind: "Role", Name: "cita-node-operator-leader-election", Scope: releaseNS, Rules: leaseRules},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := normalize(grants(t, parseObjects(t, helmTemplate(t, tc.args...))))
			if diff := cmp.Diff(normalize(tc.want), got); diff != "" {
				t.Errorf("RBAC granted to the operator (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRBACNoSecretsNoWildcards checks every rendered role, whatever the values,
// independently of the exact list above: a rule added later must not grant
// secrets or use a wildcard either.
func TestRBACNoSecretsNoWildcards(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--set", "watchNamespace=app-rivspace"},
		{"--set", "rbac.ownerReferenceFinalizers=true"},
	} {
		objs := parseObjects(t, helmTemplate(t, args...))
		n := 0
		for _, o := range objs {
			var rules []rbacv1.PolicyRule
			switch o.GetKind() {
			case "ClusterRole":
				rules = convert[rbacv1.ClusterRole](t, o).Rules
			case "Role":
				rules = convert[rbacv1.Role](t, o).Rules
			default:
				continue
			}
			for _, r := range rules {
				n++
				where := o.GetKind() + " " + o.GetName() + " " + ruleKey(r)
				if slices.Contains(r.Verbs, "*") {
					t.Errorf("%v: %s grants every verb", args, where)
				}
				if slices.Contains(r.APIGroups, "*") {
					t.Errorf("%v: %s grants every API group", args, where)
				}
				if len(r.NonResourceURLs) > 0 {
					t.Errorf("%v: %s grants non-resource URLs", args, where)
				}
				for _, res := range r.Resources {
					if res == "*" || strings.HasPrefix(res, "*/") || strings.HasSuffix(res, "/*") {
						t.Errorf("%v: %s grants a wildcard resource %q", args, where, res)
					}
					if res == "secrets" || strings.HasPrefix(res, "secrets/") || strings.HasPrefix(res, "serviceaccounts/token") {
						t.Errorf("%v: %s grants %s", args, where, res)
					}
				}
				for _, v := range r.Verbs {
					if v == "escalate" || v == "bind" || v == "impersonate" {
						t.Errorf("%v: %s grants %s", args, where, v)
					}
				}
			}
		}
		if n == 0 {
			t.Errorf("%v: no RBAC rules rendered", args)
		}
	}
}
