package packaging

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestInstallManifestInSync: manifests/install.yaml is what
// hack/render-manifests.sh renders from the chart now.
func TestInstallManifestInSync(t *testing.T) {
	env := append(helmEnv(t), "HELM="+tool(t, "helm"))
	root := repoRoot(t)
	fresh := filepath.Join(t.TempDir(), "install.yaml")
	run(t, env, filepath.Join(root, "hack", "render-manifests.sh"), fresh)
	want, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "manifests", "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("manifests/install.yaml is out of date: run hack/render-manifests.sh (-fresh +committed):\n%s", diff)
	}
}

// TestInstallManifestContents: the plain install holds the same objects as a
// default helm release, nothing cluster-wide beyond its RBAC, and no CRDs (those
// are applied from manifests/crds/).
func TestInstallManifestContents(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := parseObjects(t, string(data))
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole", "ClusterRoleBinding":
		case "CustomResourceDefinition", "Namespace":
			t.Errorf("install.yaml holds %s %s", o.GetKind(), o.GetName())
		default:
			if o.GetNamespace() != releaseNS {
				t.Errorf("%s %s is in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), releaseNS)
			}
		}
	}
	if find(objs, "Deployment", releaseName) == nil {
		t.Error("install.yaml holds no operator Deployment")
	}
}
