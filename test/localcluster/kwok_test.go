package localcluster

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
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
		"instant-job-complete": {
			map[string]any{"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
			map[string]any{"key": `.metadata.labels["batch.kubernetes.io/job-name"]`, "operator": "Exists"},
			map[string]any{"key": ".spec.containers[0].image", "operator": "In", "values": []any{InstantJobImage}},
			map[string]any{"key": ".spec.nodeName", "operator": "NotIn", "values": []any{"runner-0"}},
			map[string]any{"key": ".status.phase", "operator": "In", "values": []any{"Pending"}},
		},
		"instant-job-delete": {
			map[string]any{"key": ".metadata.deletionTimestamp", "operator": "Exists"},
			map[string]any{"key": `.metadata.labels["batch.kubernetes.io/job-name"]`, "operator": "Exists"},
			map[string]any{"key": ".spec.containers[0].image", "operator": "In", "values": []any{InstantJobImage}},
			map[string]any{"key": ".spec.nodeName", "operator": "NotIn", "values": []any{"runner-0"}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}

// TestInstantJobStatus: kwok's status for an instant Job pod, rendered as
// kwok renders it (a Go template over the pod as JSON, its Now and Quote),
// is a Succeeded pod whose container's termination message is a result the
// controller decodes; a container without arguments gets no message.
func TestInstantJobStatus(t *testing.T) {
	pod := map[string]any{"spec": map[string]any{"containers": []any{
		map[string]any{"name": "job", "image": InstantJobImage, "command": []any{"cita-node-job", "fallback", "--block-height=100"}},
		map[string]any{"name": "bare", "image": InstantJobImage},
	}}}
	now := "2026-01-02T03:04:05.123456789Z"
	tpl, err := template.New("status").Funcs(template.FuncMap{
		"Now": func() string { return now },
		// kwok's Quote: JSON for strings.
		"Quote": func(s any) string { b, _ := json.Marshal(s); return string(b) },
	}).Parse(instantJobStatus)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tpl.Execute(&out, pod); err != nil {
		t.Fatal(err)
	}
	var status corev1.PodStatus
	if err := yaml.Unmarshal(out.Bytes(), &status); err != nil {
		t.Fatalf("%v in:\n%s", err, out.String())
	}
	if status.Phase != corev1.PodSucceeded || status.StartTime == nil || len(status.ContainerStatuses) != 2 {
		t.Fatalf("status %+v, want Succeeded with a start time and 2 containers, from:\n%s", status, out.String())
	}
	job := status.ContainerStatuses[0]
	term := job.State.Terminated
	if job.Name != "job" || term == nil || term.ExitCode != 0 || term.Reason != "Completed" || term.StartedAt.IsZero() || !term.FinishedAt.Equal(&term.StartedAt) {
		t.Fatalf("job container %+v, want terminated at once with exit code 0", job)
	}
	r, err := jobargs.DecodeResult([]byte(term.Message))
	if err != nil {
		t.Fatalf("termination message %q: %v", term.Message, err)
	}
	if diff := cmp.Diff(jobargs.Result{Op: jobargs.OpFallback}, r); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if bare := status.ContainerStatuses[1].State.Terminated; bare == nil || bare.Message != "" {
		t.Errorf("container without a command: terminated %+v, want no message", bare)
	}
}
