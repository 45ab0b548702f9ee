package packaging

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller/operations"
	"github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned"
	"github.com/cita-cloud/cita-node-operator/test/fixtures"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

const watchedNS = "app-rivspace"

// startCluster starts the local control plane for t, or skips t when its
// binaries are missing (fails instead with CITA_E2E_REQUIRED=1).
func startCluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	binDir, err := localcluster.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if m := localcluster.MissingBinaries(binDir); len(m) > 0 {
		missing(t, "local control plane binaries missing in "+binDir+": "+strings.Join(m, ", ")+" (build them with hack/tools/build.sh)")
	}
	work := t.TempDir()
	c, err := localcluster.Start(t.Context(), localcluster.Options{BinDir: binDir, WorkDir: work, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	return c
}

// TestChartOnLocalCluster: the rendered templates and manifests/install.yaml
// are accepted by a real apiserver; `helm install` installs the CRDs and the
// operator; the apiserver's authorizer gives the operator's ServiceAccount
// exactly what the RBAC rules intend (and no secrets); `helm uninstall` leaves
// nothing behind but the CRDs.
//
// The operator's pods are simulated by kwok (no container runs): what is
// checked here is packaging, not the operator's behaviour.
func TestChartOnLocalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane; skipped with -short")
	}
	helm, kubectl := tool(t, "helm"), tool(t, "kubectl")
	c := startCluster(t)
	ctx := t.Context()
	env := append(helmEnv(t), "KUBECONFIG="+c.Kubeconfig)
	kube, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{releaseNS, watchedNS} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("server-side dry run", func(t *testing.T) {
		dir := t.TempDir()
		files := map[string]string{
			"default.yaml":        helmTemplate(t),
			"watchnamespace.yaml": helmTemplate(t, "--set", "watchNamespace="+watchedNS),
		}
		for name, manifest := range files {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
				t.Fatal(err)
			}
			out := run(t, env, kubectl, "apply", "--dry-run=server", "-f", path)
			t.Logf("%s:\n%s", name, out)
		}
		run(t, env, kubectl, "apply", "--dry-run=server", "-f", "manifests/install.yaml")
		run(t, env, kubectl, "apply", "--dry-run=server", "--server-side", "-f", "manifests/crds/")
	})

	run(t, env, helm, "install", releaseName, chartDir, "--namespace", releaseNS,
		"--set", "image.repository=localhost/cita-node-operator", "--set", "image.tag=test",
		"--set", "jobImage.repository=localhost/cita-node-operator-job", "--set", "jobImage.tag=test",
		"--wait", "--timeout", "2m")

	crds, err := apiextensionsclient.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	crdNames := func() []string {
		list, err := crds.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, crd := range list.Items {
			if crd.Spec.Group == "citacloud.rivtower.com" {
				names = append(names, crd.Name)
			}
		}
		return names
	}
	if got := crdNames(); len(got) != len(chartCRDs(t)) {
		t.Errorf("after helm install: CRDs %v, want the chart's %d", got, len(chartCRDs(t)))
	}
	d, err := kube.AppsV1().Deployments(releaseNS).Get(ctx, releaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.ReadyReplicas != 2 {
		t.Errorf("operator Deployment: %d ready replicas, want 2", d.Status.ReadyReplicas)
	}

	t.Run("the ServiceAccount's access", func(t *testing.T) {
		checkAccess(t, ctx, kube)
	})
	cita, err := versioned.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("the finalizer policy adds the operator's finalizer at creation", func(t *testing.T) {
		waitFinalizerPolicy(t, ctx, cita, watchedNS, true)
		for _, tc := range []struct {
			name       string
			finalizers []string
			want       []string
		}{
			{"policy-none", nil, []string{operations.Finalizer}},
			{"policy-others", []string{"example.com/keep"}, []string{"example.com/keep", operations.Finalizer}},
			{"policy-ours", []string{operations.Finalizer}, []string{operations.Finalizer}},
		} {
			got := createFallback(t, ctx, cita, watchedNS, tc.name, tc.finalizers)
			if diff := cmp.Diff(tc.want, got.Finalizers); diff != "" {
				t.Errorf("%s: finalizers of the created CR (-want +got):\n%s", tc.name, diff)
			}
		}
		// Applied again with server-side apply (as GitOps tools do), the CR
		// keeps it: admission's change belongs to no field manager, so the
		// applier, whose configuration has no finalizer, does not remove it.
		manifest := filepath.Join(t.TempDir(), "bhf.yaml")
		if err := os.WriteFile(manifest, []byte(`apiVersion: citacloud.rivtower.com/v1
kind: BlockHeightFallback
metadata:
  name: policy-apply
  namespace: `+watchedNS+`
spec:
  chain: test-chain
  node: node0
  deployMethod: cloud-config
  blockHeight: 10
`), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c := cita.CitacloudV1().BlockHeightFallbacks(watchedNS)
			_, _ = c.Patch(context.Background(), "policy-apply", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			_ = c.Delete(context.Background(), "policy-apply", metav1.DeleteOptions{})
		})
		for i := range 2 {
			run(t, env, kubectl, "apply", "--server-side", "-f", manifest)
			got, err := cita.CitacloudV1().BlockHeightFallbacks(watchedNS).Get(ctx, "policy-apply", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{operations.Finalizer}, got.Finalizers); diff != "" {
				t.Errorf("after server-side apply %d: finalizers (-want +got):\n%s", i+1, diff)
			}
		}
	})

	// Narrowed to one namespace, the operations' rules apply there only.
	run(t, env, helm, "upgrade", releaseName, chartDir, "--namespace", releaseNS, "--reuse-values",
		"--set", "watchNamespace="+watchedNS, "--wait", "--timeout", "2m")
	t.Run("the ServiceAccount's access with watchNamespace", func(t *testing.T) {
		for _, tc := range []struct {
			namespace string
			want      bool
		}{{watchedNS, true}, {"default", false}, {"", false}} {
			if got := allowedTo(t, ctx, kube, "", "pods", "", "list", tc.namespace, ""); got != tc.want {
				t.Errorf("list pods in %q: allowed=%v, want %v", tc.namespace, got, tc.want)
			}
			if got := allowedTo(t, ctx, kube, "batch", "jobs", "", "create", tc.namespace, ""); got != tc.want {
				t.Errorf("create jobs in %q: allowed=%v, want %v", tc.namespace, got, tc.want)
			}
		}
		if !allowedTo(t, ctx, kube, "", "nodes", "", "get", "", "kwok-node-0") {
			t.Error("get nodes: denied, want allowed (podAffinityFlag)")
		}
	})
	t.Run("the finalizer policy with watchNamespace", func(t *testing.T) {
		// Outside the watched namespace no operator would remove it.
		waitFinalizerPolicy(t, ctx, cita, "default", false)
		waitFinalizerPolicy(t, ctx, cita, watchedNS, true)
	})

	run(t, env, helm, "uninstall", releaseName, "--namespace", releaseNS, "--wait", "--timeout", "2m")
	selector := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + releaseName}
	var left []string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		left = left[:0]
		add := func(kind string, names ...string) {
			for _, n := range names {
				left = append(left, kind+" "+n)
			}
		}
		sas, err := kube.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + releaseName})
		if err != nil {
			return false, err
		}
		for _, o := range sas.Items {
			add("ServiceAccount", o.Namespace+"/"+o.Name)
		}
		roles, err := kube.RbacV1().Roles("").List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range roles.Items {
			add("Role", o.Namespace+"/"+o.Name)
		}
		rbs, err := kube.RbacV1().RoleBindings("").List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range rbs.Items {
			add("RoleBinding", o.Namespace+"/"+o.Name)
		}
		crs, err := kube.RbacV1().ClusterRoles().List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range crs.Items {
			add("ClusterRole", o.Name)
		}
		maps, err := kube.AdmissionregistrationV1().MutatingAdmissionPolicies().List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range maps.Items {
			add("MutatingAdmissionPolicy", o.Name)
		}
		mapbs, err := kube.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range mapbs.Items {
			add("MutatingAdmissionPolicyBinding", o.Name)
		}
		crbs, err := kube.RbacV1().ClusterRoleBindings().List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range crbs.Items {
			add("ClusterRoleBinding", o.Name)
		}
		deps, err := kube.AppsV1().Deployments("").List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range deps.Items {
			add("Deployment", o.Namespace+"/"+o.Name)
		}
		svcs, err := kube.CoreV1().Services("").List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range svcs.Items {
			add("Service", o.Namespace+"/"+o.Name)
		}
		pods, err := kube.CoreV1().Pods("").List(ctx, selector)
		if err != nil {
			return false, err
		}
		for _, o := range pods.Items {
			add("Pod", o.Namespace+"/"+o.Name)
		}
		return len(left) == 0, nil
	})
	if err != nil {
		t.Errorf("after helm uninstall, still there: %v (%v)", left, err)
	}
	if got := crdNames(); len(got) != len(chartCRDs(t)) {
		t.Errorf("after helm uninstall: CRDs %v, want all %d kept", got, len(chartCRDs(t)))
	}
}

// createFallback creates a valid BlockHeightFallback with the given
// finalizers and returns what the apiserver stored. No operator runs here:
// the CR's finalizers are removed and the CR deleted when the test ends.
func createFallback(t *testing.T, ctx context.Context, cita versioned.Interface, namespace, name string, finalizers []string) *citav1.BlockHeightFallback {
	t.Helper()
	c := cita.CitacloudV1().BlockHeightFallbacks(namespace)
	got, err := c.Create(ctx, &citav1.BlockHeightFallback{
		ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizers},
		Spec: citav1.BlockHeightFallbackSpec{
			NodeTarget:  citav1.NodeTarget{Chain: "test-chain", Node: "node0", DeployMethod: citav1.DeployMethodCloudConfig},
			BlockHeight: 10,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := c.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("remove finalizers of %s: %v", name, err)
		}
		if err := c.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", name, err)
		}
	})
	return got
}

// waitFinalizerPolicy: see fixtures.WaitFinalizerPolicy.
func waitFinalizerPolicy(t *testing.T, ctx context.Context, cita versioned.Interface, namespace string, want bool) {
	t.Helper()
	if _, err := fixtures.WaitFinalizerPolicy(ctx, cita, namespace, want, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// checkAccess asks the apiserver's authorizer (SubjectAccessReview, as the
// admin) what the operator's ServiceAccount may do: everything its work needs,
// in a watched namespace and cluster-wide, and nothing of a sample of what it
// must not do.
func checkAccess(t *testing.T, ctx context.Context, kube kubernetes.Interface) {
	type access struct {
		group, resource, subresource, verb, namespace, name string
	}
	var allowed []access
	for _, k := range operationResources(t) {
		for _, v := range []string{"get", "list", "watch", "patch"} {
			allowed = append(allowed, access{"citacloud.rivtower.com", k, "", v, watchedNS, ""})
		}
		allowed = append(allowed, access{"citacloud.rivtower.com", k, "status", "update", watchedNS, ""})
	}
	for _, r := range []string{"statefulsets", "deployments"} {
		for _, v := range []string{"get", "list", "watch", "patch"} {
			allowed = append(allowed, access{"apps", r, "", v, watchedNS, ""})
		}
	}
	for _, v := range []string{"get", "list", "watch", "delete"} {
		allowed = append(allowed, access{"", "pods", "", v, watchedNS, ""})
	}
	for _, v := range []string{"get", "list", "watch", "create", "delete", "patch"} {
		allowed = append(allowed, access{"batch", "jobs", "", v, watchedNS, ""})
	}
	for _, v := range []string{"get", "list", "watch", "create"} {
		allowed = append(allowed, access{"", "persistentvolumeclaims", "", v, watchedNS, ""})
	}
	allowed = append(allowed,
		access{"", "configmaps", "", "get", watchedNS, "node-0-config"},
		access{"", "events", "", "create", watchedNS, ""},
		access{"", "events", "", "patch", watchedNS, ""},
		access{"", "nodes", "", "get", "", "kwok-node-0"},
		access{"coordination.k8s.io", "leases", "", "create", releaseNS, ""},
		access{"coordination.k8s.io", "leases", "", "get", releaseNS, "cita-node-operator"},
		access{"coordination.k8s.io", "leases", "", "update", releaseNS, "cita-node-operator"},
		// A CitaNode's objects, server-side applied (an apply that creates
		// one needs create); its status.
		access{"apps", "statefulsets", "", "create", watchedNS, ""},
		access{"", "services", "", "create", watchedNS, ""},
		access{"", "services", "", "patch", watchedNS, ""},
		access{"", "services", "", "watch", watchedNS, ""},
		access{"discovery.k8s.io", "endpointslices", "", "create", watchedNS, ""},
		access{"discovery.k8s.io", "endpointslices", "", "patch", watchedNS, ""},
		access{"citacloud.rivtower.com", "citanodes", "", "watch", watchedNS, ""},
		access{"citacloud.rivtower.com", "citanodes", "status", "update", watchedNS, ""},
		// Cluster-wide informers (list/watch across namespaces).
		access{"citacloud.rivtower.com", "backups", "", "list", "", ""},
		access{"", "pods", "", "watch", "", ""},
	)
	denied := []access{
		{"", "secrets", "", "get", watchedNS, ""},
		{"", "secrets", "", "list", watchedNS, ""},
		{"", "secrets", "", "list", "", ""},
		{"", "secrets", "", "get", releaseNS, ""},
		{"", "serviceaccounts", "token", "create", watchedNS, "default"},
		{"", "configmaps", "", "list", watchedNS, ""},
		{"", "configmaps", "", "update", watchedNS, "node-0-config"},
		{"", "pods", "", "create", watchedNS, ""},
		{"", "pods", "exec", "create", watchedNS, "node-0"},
		{"apps", "statefulsets", "", "update", watchedNS, ""},
		{"apps", "statefulsets", "", "delete", watchedNS, ""},
		{"", "services", "", "delete", watchedNS, ""},
		{"discovery.k8s.io", "endpointslices", "", "delete", watchedNS, ""},
		{"citacloud.rivtower.com", "citanodes", "", "update", watchedNS, ""},
		{"citacloud.rivtower.com", "citanodes", "", "create", watchedNS, ""},
		{"citacloud.rivtower.com", "citanodes", "", "delete", watchedNS, ""},
		{"batch", "jobs", "", "update", watchedNS, ""},
		{"", "persistentvolumeclaims", "", "delete", watchedNS, ""},
		{"citacloud.rivtower.com", "backups", "", "update", watchedNS, ""},
		{"citacloud.rivtower.com", "backups", "", "create", watchedNS, ""},
		{"citacloud.rivtower.com", "backups", "", "delete", watchedNS, ""},
		{"", "nodes", "", "list", "", ""},
		{"", "nodes", "", "patch", "", "kwok-node-0"},
		{"coordination.k8s.io", "leases", "", "update", releaseNS, "another-lease"},
		{"coordination.k8s.io", "leases", "", "create", watchedNS, ""},
		{"rbac.authorization.k8s.io", "clusterroles", "", "create", "", ""},
		{"apiextensions.k8s.io", "customresourcedefinitions", "", "get", "", ""},
	}
	check := func(a access, want bool) {
		if got := allowedTo(t, ctx, kube, a.group, a.resource, a.subresource, a.verb, a.namespace, a.name); got != want {
			t.Errorf("%+v: allowed=%v, want %v", a, got, want)
		}
	}
	for _, a := range allowed {
		check(a, true)
	}
	for _, a := range denied {
		check(a, false)
	}
}

// allowedTo asks the apiserver's authorizer whether the operator's
// ServiceAccount may do verb on the resource ("" namespace: cluster-wide).
func allowedTo(t *testing.T, ctx context.Context, kube kubernetes.Interface, group, resource, subresource, verb, namespace, name string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   serviceAccount,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: group, Resource: resource, Subresource: subresource,
			Verb: verb, Namespace: namespace, Name: name,
		},
	}}
	got, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got.Status.Allowed
}
