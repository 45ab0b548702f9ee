// Package packaging checks how the operator is shipped: the Helm chart (lint,
// rendering, least-privilege RBAC), manifests/install.yaml rendered from it, the
// Dockerfile, the static binaries it builds and hack/image's presets that must
// agree with it, and — on the local control plane — that the chart installs, is
// accepted by a real apiserver and uninstalls cleanly.
//
// Tests needing bin/helm, bin/kubectl or the control plane binaries skip when
// they are missing, and fail instead with CITA_E2E_REQUIRED=1 (as CI sets).
package packaging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

const (
	chartDir       = "charts/cita-node-operator"
	releaseName    = "cita-node-operator"
	releaseNS      = "cita"
	serviceAccount = "system:serviceaccount:" + releaseNS + ":" + releaseName
)

// repoRoot is the directory holding go.mod, found upwards from the test's
// working directory (the package directory under go test).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// tool returns the path of bin/<name>, skipping t when it is missing (failing
// with CITA_E2E_REQUIRED=1).
func tool(t *testing.T, name string) string {
	t.Helper()
	binDir, err := localcluster.DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(binDir, name)
	if _, err := os.Stat(path); err != nil {
		missing(t, fmt.Sprintf("%s not found (build it with hack/tools/build.sh): %v", path, err))
	}
	return path
}

func missing(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CITA_E2E_REQUIRED") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// helmEnv keeps helm's cache, config and data out of $HOME.
func helmEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	return append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
}

// run runs a command in the repository root and returns its stdout; a failure
// fails t with stderr.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out
}

func runErr(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w\n%s%s", err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// helmTemplate renders the chart as hack/render-manifests.sh does, with extra
// helm arguments (--set ...).
func helmTemplate(t *testing.T, args ...string) string {
	t.Helper()
	helm := tool(t, "helm")
	base := []string{"template", releaseName, chartDir, "--namespace", releaseNS, "--include-crds=false"}
	return run(t, helmEnv(t), helm, append(base, args...)...)
}

// parseObjects splits a multi-document YAML stream into objects, skipping
// empty documents; a document that is not a Kubernetes object fails t.
func parseObjects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("parse rendered YAML: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			t.Fatalf("rendered document is not a Kubernetes object: %v", m)
		}
		objs = append(objs, u)
	}
}

// convert turns an unstructured object into a typed one.
func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// kindsOf lists "Kind namespace/name" (or "Kind name" when cluster-scoped).
func kindsOf(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		id := o.GetName()
		if o.GetNamespace() != "" {
			id = o.GetNamespace() + "/" + id
		}
		out = append(out, o.GetKind()+" "+id)
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}
