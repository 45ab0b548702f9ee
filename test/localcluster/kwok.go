package localcluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// kwok is told which nodes are its own with this annotation; every node the
// cluster creates carries it.
const (
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	kwokNodeValue      = "fake"
)

// kwokStageDirs are the stage sets shipped in the kwok module that the cluster
// runs, relative to bin/kwok-stages (hack/tools/build.sh copies them there from
// the pinned module):
//   - node/fast: a new node becomes Ready at once;
//   - node/heartbeat-with-lease: node status is refreshed rarely, liveness comes
//     from the Lease kwok renews (--node-lease-duration-seconds);
//   - pod/fast: a pod goes Running at once, a Job-owned pod then Succeeded, a
//     pod with a deletionTimestamp is deleted.
//
// kwok's volume stages are not used: they bind PVs to nothing on the host, and
// the cluster's own provisioner (provisioner.go) backs each PV with a directory.
var kwokStageDirs = []string{"node/fast", "node/heartbeat-with-lease", "pod/fast"}

// writeKwokStages writes one kwok config file holding every stage, with the pod
// stages narrowed so that pods a runner executes are never touched by kwok: no
// Running, no Succeeded, no final delete. The runner takes the kubelet's whole
// role for them (status, termination, deleting pods that carry a
// deletionTimestamp).
//
// kwok selects a stage with jq (or CEL) expressions over the object; a pod is
// left alone when it carries leaveLabel (any non-empty value) or when it is bound
// to one of leaveNodes. Node-level selection (--manage-nodes-with-*) would also
// work, but an unmanaged node would need someone to renew its Lease or the node
// lifecycle controller would taint it and evict the runner's pods; narrowing the
// pod stages keeps every node kwok-managed and Ready.
func writeKwokStages(stagesDir, out, leaveLabel string, leaveNodes []string) error {
	var skip []any
	if leaveLabel != "" {
		skip = append(skip, map[string]any{
			"key":      fmt.Sprintf(".metadata.labels[%q]", leaveLabel),
			"operator": "DoesNotExist",
		})
	}
	if len(leaveNodes) > 0 {
		skip = append(skip, map[string]any{
			"key":      ".spec.nodeName",
			"operator": "NotIn",
			"values":   leaveNodes,
		})
	}

	var buf bytes.Buffer
	write := func(stage map[string]any) error {
		// JSON is YAML; kwok splits its config on document separators.
		doc, err := json.Marshal(stage)
		if err != nil {
			return err
		}
		buf.WriteString("---\n")
		buf.Write(doc)
		buf.WriteString("\n")
		return nil
	}
	for _, dir := range kwokStageDirs {
		files, err := filepath.Glob(filepath.Join(stagesDir, dir, "*.yaml"))
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("no kwok stages in %s (run hack/tools/build.sh)", filepath.Join(stagesDir, dir))
		}
		sort.Strings(files)
		for _, f := range files {
			stage, err := readStage(f)
			if err != nil {
				return err
			}
			if filepath.Dir(dir) == "pod" && len(skip) > 0 {
				if err := addSelectorExpressions(stage, skip); err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
			}
			if err := write(stage); err != nil {
				return err
			}
		}
	}
	if leaveLabel != "" {
		for _, stage := range instantJobStages(leaveLabel, leaveNodes) {
			if err := write(stage); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// InstantJobImage marks a Job pod that kwok completes at once instead of
// leaving it to a runner: a pod carrying the cluster's LeavePodsWithLabel
// whose first container runs this image goes from Pending straight to
// Succeeded in one status write, every container terminated with exit code 0
// and, as its termination message, the result of a cita-node-job run that did
// nothing in no time ({"op":"<op>","seconds":0}, <op> being the command's
// first argument; pkg/nodeops/jobargs). Once it has a deletionTimestamp kwok
// deletes it. A benchmark then sees the cost of what surrounds a Job (the
// node's stop and start, the Job's creation and completion) without the Job's
// own run time. A runner executes every pod with the label, this image too:
// stop it while such Jobs run.
const InstantJobImage = "localcluster.invalid/instant-job:latest"

// instantJobStatus is the status kwok writes for an InstantJobImage pod (a Go
// template over the pod, with kwok's functions Now and Quote).
const instantJobStatus = `{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ with .command }}{{ if gt (len .) 1 }}      message: {{ printf "{\"op\":%s,\"seconds\":0}" (index . 1 | Quote) | Quote }}
{{ end }}{{ end }}{{ end }}
phase: Succeeded
startTime: {{ $now | Quote }}
`

// instantJobStages complete and delete the InstantJobImage pods among those
// the other pod stages leave alone.
func instantJobStages(leaveLabel string, leaveNodes []string) []map[string]any {
	selector := func(deleting string, more ...map[string]any) map[string]any {
		exprs := []any{
			map[string]any{"key": ".metadata.deletionTimestamp", "operator": deleting},
			map[string]any{"key": fmt.Sprintf(".metadata.labels[%q]", leaveLabel), "operator": "Exists"},
			map[string]any{"key": ".spec.containers[0].image", "operator": "In", "values": []any{InstantJobImage}},
		}
		if len(leaveNodes) > 0 {
			exprs = append(exprs, map[string]any{"key": ".spec.nodeName", "operator": "NotIn", "values": leaveNodes})
		}
		for _, m := range more {
			exprs = append(exprs, m)
		}
		return map[string]any{"matchExpressions": exprs}
	}
	stage := func(name string, selector, next map[string]any) map[string]any {
		return map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1",
			"kind":       "Stage",
			"metadata":   map[string]any{"name": name},
			"spec": map[string]any{
				"resourceRef": map[string]any{"apiGroup": "v1", "kind": "Pod"},
				"selector":    selector,
				"next":        next,
			},
		}
	}
	return []map[string]any{
		stage("instant-job-complete",
			selector("DoesNotExist", map[string]any{"key": ".status.phase", "operator": "In", "values": []any{"Pending"}}),
			map[string]any{"statusTemplate": instantJobStatus}),
		stage("instant-job-delete", selector("Exists"), map[string]any{"delete": true}),
	}
}

func readStage(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.ToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var stage map[string]any
	if err := json.Unmarshal(js, &stage); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if stage["kind"] != "Stage" {
		return nil, fmt.Errorf("%s: kind %v, want Stage", path, stage["kind"])
	}
	return stage, nil
}

func addSelectorExpressions(stage map[string]any, exprs []any) error {
	spec, ok := stage["spec"].(map[string]any)
	if !ok {
		return fmt.Errorf("stage has no spec")
	}
	selector, _ := spec["selector"].(map[string]any)
	if selector == nil {
		selector = map[string]any{}
		spec["selector"] = selector
	}
	existing, _ := selector["matchExpressions"].([]any)
	selector["matchExpressions"] = append(existing, exprs...)
	return nil
}
