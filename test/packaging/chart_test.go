package packaging

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller/operations"
)

func TestHelmLint(t *testing.T) {
	helm := tool(t, "helm")
	for name, args := range map[string][]string{
		"default values":    nil,
		"watchNamespace":    {"--set", "watchNamespace=app-rivspace"},
		"serviceMonitor":    {"--set", "metrics.serviceMonitor.enabled=true"},
		"one replica alone": {"--set", "replicaCount=1", "--set", "leaderElection.enabled=false"},
	} {
		t.Run(name, func(t *testing.T) {
			out := run(t, helmEnv(t), helm, append([]string{"lint", "--strict", chartDir}, args...)...)
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "[WARNING]") || strings.Contains(line, "[ERROR]") {
					t.Errorf("helm lint: %s", line)
				}
			}
		})
	}
}

func TestTemplateKinds(t *testing.T) {
	defaults := []string{
		"ServiceAccount cita/cita-node-operator",
		"ClusterRole cita-node-operator",
		"ClusterRole cita-node-operator-nodes",
		"ClusterRoleBinding cita-node-operator",
		"ClusterRoleBinding cita-node-operator-nodes",
		"Role cita/cita-node-operator-leader-election",
		"RoleBinding cita/cita-node-operator-leader-election",
		"Service cita/cita-node-operator-metrics",
		"Deployment cita/cita-node-operator",
	}
	tests := map[string]struct {
		args []string
		want []string
	}{
		"default values: cluster-wide": {
			want: defaults,
		},
		"watchNamespace: a Role there": {
			args: []string{"--set", "watchNamespace=app-rivspace"},
			want: []string{
				"ServiceAccount cita/cita-node-operator",
				"ClusterRole cita-node-operator-nodes",
				"ClusterRoleBinding cita-node-operator-nodes",
				"Role app-rivspace/cita-node-operator",
				"Role cita/cita-node-operator-leader-election",
				"RoleBinding app-rivspace/cita-node-operator",
				"RoleBinding cita/cita-node-operator-leader-election",
				"Service cita/cita-node-operator-metrics",
				"Deployment cita/cita-node-operator",
			},
		},
		"serviceMonitor only when enabled": {
			args: []string{"--set", "metrics.serviceMonitor.enabled=true"},
			want: append(slices.Clone(defaults), "ServiceMonitor cita/cita-node-operator"),
		},
		"no RBAC, no ServiceAccount, no metrics Service": {
			args: []string{"--set", "rbac.create=false", "--set", "serviceAccount.create=false",
				"--set", "serviceAccount.name=existing", "--set", "metrics.service.enabled=false"},
			want: []string{"Deployment cita/cita-node-operator"},
		},
		"finalizer policy where the cluster serves MutatingAdmissionPolicy": {
			args: []string{"--api-versions", mapAPIVersion},
			want: append(slices.Clone(defaults),
				"MutatingAdmissionPolicy cita-node-operator-cita-finalizer",
				"MutatingAdmissionPolicyBinding cita-node-operator-cita-finalizer"),
		},
		"finalizer policy disabled": {
			args: []string{"--api-versions", mapAPIVersion, "--set", "finalizerPolicy.enabled=false"},
			want: defaults,
		},
		"no leader election with one replica: no Lease Role": {
			args: []string{"--set", "replicaCount=1", "--set", "leaderElection.enabled=false"},
			want: []string{
				"ServiceAccount cita/cita-node-operator",
				"ClusterRole cita-node-operator",
				"ClusterRole cita-node-operator-nodes",
				"ClusterRoleBinding cita-node-operator",
				"ClusterRoleBinding cita-node-operator-nodes",
				"Service cita/cita-node-operator-metrics",
				"Deployment cita/cita-node-operator",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := kindsOf(parseObjects(t, helmTemplate(t, tc.args...)))
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("rendered objects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTemplateRefusesUnsafeValues(t *testing.T) {
	helm := tool(t, "helm")
	tests := map[string]struct {
		args []string
		want string
	}{
		"two replicas without leader election": {
			[]string{"--set", "leaderElection.enabled=false"}, "needs leaderElection.enabled"},
		"the original project's job image": {
			[]string{"--set", "jobImage.repository=citacloud/cita-node-job"}, "original project's cita-node-job"},
		"--namespace in extraArgs": {
			[]string{"--set", "extraArgs={--namespace=app-rivspace}"}, "set watchNamespace"},
		"a ServiceMonitor without the Service": {
			[]string{"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"}, "needs metrics.service.enabled"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"template", releaseName, chartDir, "--namespace", releaseNS}, tc.args...)
			_, err := runErr(t, helmEnv(t), helm, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template %v: error %v, want one containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func renderedDeployment(t *testing.T, args ...string) *appsv1.Deployment {
	t.Helper()
	u := find(parseObjects(t, helmTemplate(t, args...)), "Deployment", releaseName)
	if u == nil {
		t.Fatal("no Deployment rendered")
	}
	return convert[appsv1.Deployment](t, u)
}

func TestDeploymentArgsMapToOperatorFlags(t *testing.T) {
	tests := map[string]struct {
		args []string
		want []string
	}{
		"default values": {
			want: []string{
				"--job-image=ghcr.io/cita-cloud/cita-node-operator-job:0.1.0",
				"--workers=32",
				"--start-ready-timeout=5m",
				"--leader-elect=true",
				"--leader-elect-namespace=cita",
				"--leader-elect-id=cita-node-operator",
				"--metrics-bind-address=:8080",
				"--health-probe-bind-address=:8081",
			},
		},
		"watchNamespace, job image, extra args": {
			args: []string{"--set", "watchNamespace=app-rivspace", "--set", "jobImage.tag=v1.2.3",
				"--set", "workers=3", "--set", "startReadyTimeout=90s", "--set", "extraArgs={--stop-timeout=15m,-v=4}"},
			want: []string{
				"--job-image=ghcr.io/cita-cloud/cita-node-operator-job:v1.2.3",
				"--namespace=app-rivspace",
				"--workers=3",
				"--start-ready-timeout=90s",
				"--leader-elect=true",
				"--leader-elect-namespace=cita",
				"--leader-elect-id=cita-node-operator",
				"--metrics-bind-address=:8080",
				"--health-probe-bind-address=:8081",
				"--stop-timeout=15m",
				"-v=4",
			},
		},
		"leader election off": {
			args: []string{"--set", "replicaCount=1", "--set", "leaderElection.enabled=false"},
			want: []string{
				"--job-image=ghcr.io/cita-cloud/cita-node-operator-job:0.1.0",
				"--workers=32",
				"--start-ready-timeout=5m",
				"--leader-elect=false",
				"--metrics-bind-address=:8080",
				"--health-probe-bind-address=:8081",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := renderedDeployment(t, tc.args...)
			if diff := cmp.Diff(tc.want, d.Spec.Template.Spec.Containers[0].Args); diff != "" {
				t.Errorf("operator args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeploymentHardening(t *testing.T) {
	d := renderedDeployment(t)
	pod := d.Spec.Template.Spec
	if got := ptr.Deref(d.Spec.Replicas, 1); got != 2 {
		t.Errorf("replicas = %d, want 2", got)
	}
	if pod.ServiceAccountName != releaseName {
		t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, releaseName)
	}
	wantPod := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](65532),
		RunAsGroup:     ptr.To[int64](65532),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if diff := cmp.Diff(wantPod, pod.SecurityContext); diff != "" {
		t.Errorf("pod securityContext (-want +got):\n%s", diff)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "ghcr.io/cita-cloud/cita-node-operator:0.1.0" {
		t.Errorf("image = %q", c.Image)
	}
	wantContainer := &corev1.SecurityContext{
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	if diff := cmp.Diff(wantContainer, c.SecurityContext); diff != "" {
		t.Errorf("container securityContext (-want +got):\n%s", diff)
	}
	probe := func(p *corev1.Probe) string {
		if p == nil || p.HTTPGet == nil {
			return "none"
		}
		port := p.HTTPGet.Port.String()
		for _, cp := range c.Ports {
			if cp.Name == port {
				port = cp.Name + "=" + strconv.Itoa(int(cp.ContainerPort))
			}
		}
		return p.HTTPGet.Path + " on " + port
	}
	if got := probe(c.LivenessProbe); got != "/healthz on health=8081" {
		t.Errorf("liveness probe: %s, want /healthz on health=8081", got)
	}
	if got := probe(c.ReadinessProbe); got != "/readyz on health=8081" {
		t.Errorf("readiness probe: %s, want /readyz on health=8081", got)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: want memory request and limit, got %v", c.Resources)
	}
}

// TestDeploymentNetworkValues: by default the operator is an ordinary pod;
// hostNetwork and extraEnv, for a cluster without a pod network or Service
// routing, put it on its machine's network with the apiserver's address.
func TestDeploymentNetworkValues(t *testing.T) {
	pod := renderedDeployment(t).Spec.Template.Spec
	if pod.HostNetwork || pod.DNSPolicy != "" {
		t.Errorf("default: hostNetwork %v, dnsPolicy %q", pod.HostNetwork, pod.DNSPolicy)
	}
	if env := pod.Containers[0].Env; len(env) != 2 || env[0].Name != "POD_NAME" || env[1].Name != "GOMEMLIMIT" {
		t.Errorf("default env %+v, want POD_NAME and GOMEMLIMIT", env)
	}
	pod = renderedDeployment(t, "--set", "hostNetwork=true",
		"--set", "extraEnv[0].name=KUBERNETES_SERVICE_HOST", "--set", "extraEnv[0].value=127.0.0.1",
		"--set-string", "extraEnv[1].name=KUBERNETES_SERVICE_PORT", "--set-string", "extraEnv[1].value=6443").Spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v, dnsPolicy %q", pod.HostNetwork, pod.DNSPolicy)
	}
	want := []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "6443"}}
	if diff := cmp.Diff(want, pod.Containers[0].Env[2:]); diff != "" {
		t.Errorf("extraEnv (-want +got):\n%s", diff)
	}
}

// mapAPIVersion is what a cluster serving MutatingAdmissionPolicy (1.36+)
// announces; helm template does not announce it by default.
const mapAPIVersion = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"

// TestFinalizerPolicy: the policy adds exactly the finalizer the operator
// removes, on CREATE of the operation kinds only, and with watchNamespace
// only in that namespace (elsewhere no operator would ever remove it).
func TestFinalizerPolicy(t *testing.T) {
	for name, tc := range map[string]struct {
		args       []string
		namespaces []string // nil: all
	}{
		"cluster-wide":   {},
		"watchNamespace": {args: []string{"--set", "watchNamespace=app-rivspace"}, namespaces: []string{"app-rivspace"}},
	} {
		t.Run(name, func(t *testing.T) {
			objs := parseObjects(t, helmTemplate(t, append([]string{"--api-versions", mapAPIVersion}, tc.args...)...))
			policy := find(objs, "MutatingAdmissionPolicy", "cita-node-operator-cita-finalizer")
			binding := find(objs, "MutatingAdmissionPolicyBinding", "cita-node-operator-cita-finalizer")
			if policy == nil || binding == nil {
				t.Fatalf("policy %v, binding %v: want both", policy != nil, binding != nil)
			}
			p := convert[admissionregistrationv1.MutatingAdmissionPolicy](t, policy)
			if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionregistrationv1.Ignore {
				t.Errorf("failurePolicy %v, want Ignore: the operator adds the finalizer itself when the policy fails", p.Spec.FailurePolicy)
			}
			rules := p.Spec.MatchConstraints.ResourceRules
			if len(rules) != 1 {
				t.Fatalf("resource rules %d, want 1", len(rules))
			}
			r := rules[0]
			if diff := cmp.Diff([]admissionregistrationv1.OperationType{admissionregistrationv1.Create}, r.Operations); diff != "" {
				t.Errorf("operations (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(operationResources(t), slices.Sorted(slices.Values(r.Resources))); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{citav1.SchemeGroupVersion.Group}, r.APIGroups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
			if len(p.Spec.Mutations) != 1 || p.Spec.Mutations[0].JSONPatch == nil {
				t.Fatalf("mutations %+v, want one JSONPatch", p.Spec.Mutations)
			}
			expr := p.Spec.Mutations[0].JSONPatch.Expression
			if got := strings.Count(expr, strconv.Quote(operations.Finalizer)); got != 3 {
				t.Errorf("the expression names %q %d times, want 3 (the operator's finalizer):\n%s", operations.Finalizer, got, expr)
			}
			b := convert[admissionregistrationv1.MutatingAdmissionPolicyBinding](t, binding)
			if b.Spec.PolicyName != p.Name {
				t.Errorf("binding names policy %q, want %q", b.Spec.PolicyName, p.Name)
			}
			var got []string
			if b.Spec.MatchResources != nil && b.Spec.MatchResources.NamespaceSelector != nil {
				got = append(got, b.Spec.MatchResources.NamespaceSelector.MatchLabels[corev1.LabelMetadataName])
			}
			if diff := cmp.Diff(tc.namespaces, got); diff != "" {
				t.Errorf("namespaces the binding selects, nil = all (-want +got):\n%s", diff)
			}
		})
	}
}
