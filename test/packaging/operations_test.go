package packaging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
)

// notOperationKinds are the kinds with a CRD in the chart's crds/ that are
// not operations: CitaNode, a long-lived node with a controller of its own. Every other CRD there is an operation kind. The list is explicit
// rather than guessed from the schemas so that it fails closed: a new CRD in
// neither the chart's operation list nor this one fails
// TestChartOperationResourcesAreTheCRDs, and whoever adds a kind decides
// which it is.
var notOperationKinds = []string{"CitaNode"}

// chartCRDs are the CRDs the chart installs, generated from pkg/apis.
func chartCRDs(t *testing.T) []apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), chartDir, "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no CRDs in %s/crds", chartDir)
	}
	var out []apiextensionsv1.CustomResourceDefinition
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, crd)
	}
	return out
}

// operationResources are the plural resource names of the operation kinds,
// taken from the chart's CRDs, sorted: what the chart's RBAC and finalizer
// policy must name.
func operationResources(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, crd := range chartCRDs(t) {
		if !slices.Contains(notOperationKinds, crd.Spec.Names.Kind) {
			out = append(out, crd.Spec.Names.Plural)
		}
	}
	slices.Sort(out)
	return out
}

// chartOperationResources renders the chart's operationResources template
// alone, through fromYamlArray as the chart's templates read it: a copy of
// the chart with one more template that prints it.
func chartOperationResources(t *testing.T) []string {
	t.Helper()
	helm := tool(t, "helm")
	chart := filepath.Join(t.TempDir(), "chart")
	if err := os.CopyFS(chart, os.DirFS(filepath.Join(repoRoot(t), chartDir))); err != nil {
		t.Fatal(err)
	}
	const probe = "templates/zz-operation-resources-probe.yaml"
	if err := os.WriteFile(filepath.Join(chart, probe), []byte(`apiVersion: v1
kind: ConfigMap
metadata:
  name: operation-resources
data:
  resources: {{ include "cita-node-operator.operationResources" . | fromYamlArray | toJson | quote }}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, helmEnv(t), helm, "template", releaseName, chart, "--namespace", releaseNS, "--show-only", probe)
	objs := parseObjects(t, out)
	if len(objs) != 1 {
		t.Fatalf("the probe rendered %d objects, want 1:\n%s", len(objs), out)
	}
	var resources []string
	if err := json.Unmarshal([]byte(convert[corev1.ConfigMap](t, objs[0]).Data["resources"]), &resources); err != nil {
		t.Fatalf("cita-node-operator.operationResources is not a YAML list of names: %v\n%s", err, out)
	}
	return resources
}

// TestChartOperationResourcesAreTheCRDs: the chart's one list of operation
// kinds names exactly the operation CRDs it installs, once each, so that a
// kind added to the API (and so to crds/) but not to the chart's RBAC and
// finalizer policy, or left in the chart after its CRD went, is caught.
func TestChartOperationResourcesAreTheCRDs(t *testing.T) {
	crds := chartCRDs(t)
	for _, crd := range crds {
		if crd.Spec.Group != citav1.GroupName {
			t.Errorf("CRD %s is in group %q, want %q", crd.Name, crd.Spec.Group, citav1.GroupName)
		}
	}
	for _, kind := range notOperationKinds {
		if !slices.ContainsFunc(crds, func(c apiextensionsv1.CustomResourceDefinition) bool { return c.Spec.Names.Kind == kind }) {
			t.Errorf("notOperationKinds names %s, which has no CRD in %s/crds: remove it", kind, chartDir)
		}
	}

	got := chartOperationResources(t)
	sorted := slices.Sorted(slices.Values(got))
	if compacted := slices.Compact(slices.Clone(sorted)); len(compacted) != len(sorted) {
		t.Errorf("cita-node-operator.operationResources names a kind twice: %v", got)
	}
	if diff := cmp.Diff(operationResources(t), slices.Compact(sorted)); diff != "" {
		t.Errorf("cita-node-operator.operationResources (templates/_helpers.tpl) and the operation CRDs in %s/crds differ (-CRDs +chart):\n%s\n"+
			"Add an operation kind's plural there, remove one whose CRD went; a CRD that is not an operation goes in notOperationKinds.", chartDir, diff)
	}
}
