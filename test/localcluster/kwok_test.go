package localcluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteKwokStagesLeavesRunnerPodsAlone(t *testing.T) {
	stages := t.TempDir()
	stage := func(kind, name string) string {
		return "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: " + name +
			"\nspec:\n  resourceRef:\n    apiGroup: v1\n    kind: " + kind +
			"\n  selector:\n    matchExpressions:\n    - key: .metadata.deletionTimestamp\n      operator: DoesNotExist\n"
	}
	for _, dir := range kwokStageDirs {
		if err := os.MkdirAll(filepath.Join(stages, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		kind := "Node"
		if strings.HasPrefix(dir, "pod/") {
			kind = "Pod"
		}
		name := strings.ReplaceAll(dir, "/", "-")
		if err := os.WriteFile(filepath.Join(stages, dir, name+".yaml"), []byte(stage(kind, name)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "kwok.yaml")
	if err := writeKwokStages(stages, out, JobPodLabel, []string{"runner-0"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}

	got := map[string][]any{}
	for _, doc := range strings.Split(string(data), "---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var s struct {
			Metadata struct{ Name string }
			Spec     struct {
				Selector struct{ MatchExpressions []any }
			}
		}
		if err := json.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatalf("%v in %q", err, doc)
		}
		got[s.Metadata.Name] = s.Spec.Selector.MatchExpressions
	}
	base := map[string]any{"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
	want := map[string][]any{
		"node-fast":                 {base},
		"node-heartbeat-with-lease": {base},
		"pod-fast": {
			base,
			map[string]any{"key": `.metadata.labels["batch.kubernetes.io/job-name"]`, "operator": "DoesNotExist"},
			map[string]any{"key": ".spec.nodeName", "operator": "NotIn", "values": []any{"runner-0"}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}
