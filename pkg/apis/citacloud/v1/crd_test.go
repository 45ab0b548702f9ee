package v1_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

const crdDir = "../../../../manifests/crds"

// crdValidator checks a custom resource the way kube-apiserver does on
// create and update: default, prune, OpenAPI schema, then CEL rules.
type crdValidator struct {
	crd        *apiextensions.CustomResourceDefinition
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

func loadCRD(t *testing.T, kind string) *crdValidator {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var v1crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &v1crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if v1crd.Spec.Names.Kind != kind {
			continue
		}
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(&v1crd)
		var crd apiextensions.CustomResourceDefinition
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1crd, &crd, nil); err != nil {
			t.Fatal(err)
		}
		if len(crd.Spec.Versions) != 1 {
			t.Fatalf("%s: want one version, got %d", kind, len(crd.Spec.Versions))
		}
		// With a single version the internal type hoists the version's
		// schema, subresources and columns to the top level.
		openapi := crd.Spec.Validation.OpenAPIV3Schema
		structural, err := structuralschema.NewStructural(openapi)
		if err != nil {
			t.Fatalf("%s: schema is not structural: %v", kind, err)
		}
		validator, _, err := apiservervalidation.NewSchemaValidator(openapi)
		if err != nil {
			t.Fatal(err)
		}
		return &crdValidator{
			crd:        &crd,
			structural: structural,
			schema:     validator,
			cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
		}
	}
	t.Fatalf("no CRD for kind %s in %s", kind, crdDir)
	return nil
}

func (v *crdValidator) admit(obj, old map[string]any) field.ErrorList {
	structuraldefaulting.Default(obj, v.structural)
	pruning.Prune(obj, v.structural, true)
	var errs field.ErrorList
	if old == nil {
		errs = apiservervalidation.ValidateCustomResource(nil, obj, v.schema)
	} else {
		errs = apiservervalidation.ValidateCustomResourceUpdate(nil, obj, old, v.schema)
	}
	var oldObj any
	if old != nil {
		oldObj = old
	}
	celErrs, _ := v.cel.Validate(context.Background(), nil, v.structural, obj, oldObj, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

func sampleMap(t *testing.T, file string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(samplesDir, file))
	if err != nil {
		t.Fatal(err)
	}
	// Decode as the apiserver does: integers stay int64 (CEL is typed).
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(js, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

func spec(obj map[string]any) map[string]any { return obj["spec"].(map[string]any) }

var kindOfSample = map[string]string{
	"1-blockheightfallback.yaml": "BlockHeightFallback",
	"2-backup.yaml":              "Backup",
	"3-snapshot.yaml":            "Snapshot",
	"4-restore-backup.yaml":      "Restore",
	"5-restore-snapshot.yaml":    "Restore",
	"6-switchover.yaml":          "Switchover",
	"7-changeowner.yaml":         "ChangeOwner",
}

// TestCRDsAreValid runs the apiserver's own CRD validation, which also
// compiles every CEL rule and checks its cost.
func TestCRDsAreValid(t *testing.T) {
	for _, kind := range []string{"BlockHeightFallback", "Backup", "Snapshot", "Restore", "Switchover", "ChangeOwner"} {
		t.Run(kind, func(t *testing.T) {
			v := loadCRD(t, kind)
			if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), v.crd); len(errs) > 0 {
				t.Fatalf("CRD rejected: %v", errs.ToAggregate())
			}
			if v.crd.Spec.Subresources == nil || v.crd.Spec.Subresources.Status == nil {
				t.Error("no status subresource")
			}
			cols := map[string]bool{}
			for _, c := range v.crd.Spec.AdditionalPrinterColumns {
				cols[c.Name] = true
			}
			want := []string{"Chain", "Node", "Status", "Step", "Age"}
			switch kind {
			case "Switchover":
				want = []string{"Chain", "Source", "Dest", "Status", "Step", "Age"}
			case "Backup", "Snapshot":
				want = append(want, "Size")
			}
			for _, c := range want {
				if !cols[c] {
					t.Errorf("printer column %s missing", c)
				}
			}
		})
	}
	if names := loadCRD(t, "BlockHeightFallback").crd.Spec.Names.ShortNames; len(names) != 1 || names[0] != "bhf" {
		t.Errorf("BlockHeightFallback short names %v, want [bhf]", names)
	}
}

// TestSamplesAreAdmittedWithDefaults applies each README sample as the
// apiserver would and checks the defaults it stores.
func TestSamplesAreAdmittedWithDefaults(t *testing.T) {
	for file, kind := range kindOfSample {
		t.Run(file, func(t *testing.T) {
			obj := sampleMap(t, file)
			if errs := loadCRD(t, kind).admit(obj, nil); len(errs) > 0 {
				t.Fatalf("sample rejected: %v", errs.ToAggregate())
			}
			s := spec(obj)
			if s["pullPolicy"] == nil || s["ttlSecondsAfterFinished"] == nil {
				t.Errorf("pullPolicy/ttlSecondsAfterFinished not defaulted: %v", s)
			}
			if kind != "Switchover" {
				if s["action"] == nil || s["podAffinityFlag"] == nil {
					t.Errorf("action/podAffinityFlag not defaulted: %v", s)
				}
			}
		})
	}
}

func TestDefaultsOfAMinimalObject(t *testing.T) {
	cases := map[string]struct {
		kind string
		spec map[string]any
		want map[string]any
	}{
		"BlockHeightFallback": {
			kind: "BlockHeightFallback",
			spec: map[string]any{"chain": "c", "node": "n", "deployMethod": "helm", "blockHeight": int64(0)},
			want: map[string]any{"action": "StopAndStart", "pullPolicy": "IfNotPresent", "ttlSecondsAfterFinished": int64(30), "podAffinityFlag": false, "deleteConsensusData": false, "blockHeight": int64(0)},
		},
		"ChangeOwner": {
			kind: "ChangeOwner",
			spec: map[string]any{"chain": "c", "node": "n", "deployMethod": "python"},
			want: map[string]any{"uid": int64(1000), "gid": int64(1000), "action": "StopAndStart"},
		},
		"ChangeOwner keeps an explicit zero": {
			kind: "ChangeOwner",
			spec: map[string]any{"chain": "c", "node": "n", "deployMethod": "python", "uid": int64(0), "gid": int64(0), "ttlSecondsAfterFinished": int64(0)},
			want: map[string]any{"uid": int64(0), "gid": int64(0), "ttlSecondsAfterFinished": int64(0)},
		},
		"Switchover": {
			kind: "Switchover",
			spec: map[string]any{"chain": "c", "sourceNode": "a", "destNode": "b"},
			want: map[string]any{"pullPolicy": "IfNotPresent", "ttlSecondsAfterFinished": int64(30)},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := newCR(tc.kind, tc.spec)
			if errs := loadCRD(t, tc.kind).admit(obj, nil); len(errs) > 0 {
				t.Fatalf("rejected: %v", errs.ToAggregate())
			}
			got := spec(obj)
			for k, want := range tc.want {
				if got[k] != want {
					t.Errorf("spec.%s = %#v, want %#v", k, got[k], want)
				}
			}
		})
	}
}

func newCR(kind string, spec map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "citacloud.rivtower.com/v1",
		"kind":       kind,
		"metadata":   map[string]any{"name": "x", "namespace": "ns"},
		"spec":       spec,
	}
}

// TestInvalidObjectsAreRejected: every invalid variant is refused with a
// message that names the offending field.
func TestInvalidObjectsAreRejected(t *testing.T) {
	type mutation func(spec map[string]any)
	del := func(field string) mutation { return func(s map[string]any) { delete(s, field) } }
	set := func(field string, v any) mutation { return func(s map[string]any) { s[field] = v } }

	cases := map[string]struct {
		sample string
		mutate mutation
		want   []string // substrings of the error, the first naming the field
	}{
		"bhf without chain":            {"1-blockheightfallback.yaml", del("chain"), []string{"spec.chain", "Required"}},
		"bhf without node":             {"1-blockheightfallback.yaml", del("node"), []string{"spec.node", "Required"}},
		"bhf without blockHeight":      {"1-blockheightfallback.yaml", del("blockHeight"), []string{"spec.blockHeight", "Required"}},
		"bhf without deployMethod":     {"1-blockheightfallback.yaml", del("deployMethod"), []string{"spec.deployMethod", "Required"}},
		"bhf with empty chain":         {"1-blockheightfallback.yaml", set("chain", ""), []string{"spec.chain"}},
		"bhf with empty node":          {"1-blockheightfallback.yaml", set("node", ""), []string{"spec.node"}},
		"bhf with negative height":     {"1-blockheightfallback.yaml", set("blockHeight", int64(-1)), []string{"spec.blockHeight", "greater than or equal to 0"}},
		"bhf with negative ttl":        {"1-blockheightfallback.yaml", set("ttlSecondsAfterFinished", int64(-5)), []string{"spec.ttlSecondsAfterFinished", "greater than or equal to 0"}},
		"bhf with unknown deploy":      {"1-blockheightfallback.yaml", set("deployMethod", "kustomize"), []string{"spec.deployMethod", "Unsupported value"}},
		"bhf with unknown pullPolicy":  {"1-blockheightfallback.yaml", set("pullPolicy", "Sometimes"), []string{"spec.pullPolicy", "Unsupported value"}},
		"bhf with unknown action":      {"1-blockheightfallback.yaml", set("action", "Restart"), []string{"spec.action", "Unsupported value"}},
		"bhf with node not a name":     {"1-blockheightfallback.yaml", set("node", "Node_0"), []string{"spec.node"}},
		"backup without chain":         {"2-backup.yaml", del("chain"), []string{"spec.chain", "Required"}},
		"backup without node":          {"2-backup.yaml", del("node"), []string{"spec.node", "Required"}},
		"backup without deployMethod":  {"2-backup.yaml", del("deployMethod"), []string{"spec.deployMethod", "Required"}},
		"backup with unknown action":   {"2-backup.yaml", set("action", "Live"), []string{"spec.action", "Unsupported value"}},
		"backup with bad pvcSize":      {"2-backup.yaml", set("pvcSize", "ten gigs"), []string{"spec.pvcSize"}},
		"snapshot without blockHeight": {"3-snapshot.yaml", del("blockHeight"), []string{"spec.blockHeight", "Required"}},
		"snapshot negative height":     {"3-snapshot.yaml", set("blockHeight", int64(-30)), []string{"spec.blockHeight"}},
		"snapshot without node":        {"3-snapshot.yaml", del("node"), []string{"spec.node", "Required"}},
		"restore with both":            {"4-restore-backup.yaml", set("snapshot", "snapshot-sample"), []string{"spec", "exactly one of spec.backup or spec.snapshot"}},
		"restore with neither":         {"4-restore-backup.yaml", del("backup"), []string{"spec", "exactly one of spec.backup or spec.snapshot"}},
		"restore with empty backup":    {"4-restore-backup.yaml", set("backup", ""), []string{"spec.backup"}},
		"restore without deployMethod": {"5-restore-snapshot.yaml", del("deployMethod"), []string{"spec.deployMethod", "Required"}},
		"switchover same nodes":        {"6-switchover.yaml", set("destNode", "test-chain-zenoh-bft-node0"), []string{"spec.destNode", "must differ from spec.sourceNode"}},
		"switchover without source":    {"6-switchover.yaml", del("sourceNode"), []string{"spec.sourceNode", "Required"}},
		"switchover without dest":      {"6-switchover.yaml", del("destNode"), []string{"spec.destNode", "Required"}},
		"switchover without chain":     {"6-switchover.yaml", del("chain"), []string{"spec.chain", "Required"}},
		"switchover negative ttl":      {"6-switchover.yaml", set("ttlSecondsAfterFinished", int64(-1)), []string{"spec.ttlSecondsAfterFinished"}},
		"changeowner negative uid":     {"7-changeowner.yaml", set("uid", int64(-1)), []string{"spec.uid", "greater than or equal to 0"}},
		"changeowner negative gid":     {"7-changeowner.yaml", set("gid", int64(-1)), []string{"spec.gid", "greater than or equal to 0"}},
		"changeowner without node":     {"7-changeowner.yaml", del("node"), []string{"spec.node", "Required"}},
		"changeowner unknown deploy":   {"7-changeowner.yaml", set("deployMethod", "docker"), []string{"spec.deployMethod", "Unsupported value"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := sampleMap(t, tc.sample)
			tc.mutate(spec(obj))
			errs := loadCRD(t, kindOfSample[tc.sample]).admit(obj, nil)
			assertRejected(t, errs, tc.want)
		})
	}

	t.Run("object without spec", func(t *testing.T) {
		obj := sampleMap(t, "2-backup.yaml")
		delete(obj, "spec")
		assertRejected(t, loadCRD(t, "Backup").admit(obj, nil), []string{"spec", "Required"})
	})
}

func assertRejected(t *testing.T, errs field.ErrorList, want []string) {
	t.Helper()
	if len(errs) == 0 {
		t.Fatalf("accepted, want an error mentioning %q", want)
	}
	msg := errs.ToAggregate().Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}

// TestSpecIsImmutable: any change to spec after creation is refused, while
// metadata (finalizers, labels) and status may change.
func TestSpecIsImmutable(t *testing.T) {
	for file, kind := range kindOfSample {
		t.Run(file, func(t *testing.T) {
			v := loadCRD(t, kind)
			old := sampleMap(t, file)
			if errs := v.admit(old, nil); len(errs) > 0 {
				t.Fatal(errs.ToAggregate())
			}

			changed := runtime.DeepCopyJSON(old)
			spec(changed)["chain"] = "another-chain"
			assertRejected(t, v.admit(changed, old), []string{"spec", "spec is immutable after creation"})

			defaulted := runtime.DeepCopyJSON(old)
			spec(defaulted)["pullPolicy"] = "Never"
			assertRejected(t, v.admit(defaulted, old), []string{"spec is immutable"})

			metaOnly := runtime.DeepCopyJSON(old)
			metaOnly["metadata"].(map[string]any)["finalizers"] = []any{"citacloud.rivtower.com/node-restart"}
			if errs := v.admit(metaOnly, old); len(errs) > 0 {
				t.Errorf("metadata-only change rejected: %v", errs.ToAggregate())
			}
		})
	}
}
