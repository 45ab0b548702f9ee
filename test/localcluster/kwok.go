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
			// JSON is YAML; kwok splits its config on document separators.
			doc, err := json.Marshal(stage)
			if err != nil {
				return err
			}
			buf.WriteString("---\n")
			buf.Write(doc)
			buf.WriteString("\n")
		}
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
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
