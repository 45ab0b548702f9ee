//go:build linux

package jobrunner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMountPlan(t *testing.T) {
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"keep", "a/exists", "deep/x"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(tmp, "a"), filepath.Join(tmp, "link")); err != nil {
		t.Fatal(err)
	}
	mp := &mountPlan{protect: []string{filepath.Join(tmp, "keep")}}
	check := func(path, want string, wantRoots ...string) {
		t.Helper()
		got, err := mp.target(path)
		if err != nil || got != want {
			t.Errorf("target(%s) = %q, %v; want %q", path, got, err, want)
		}
		if !slices.Equal(mp.roots, wantRoots) {
			t.Errorf("after %s roots = %v, want %v", path, mp.roots, wantRoots)
		}
	}
	// Existing paths are bound over, no tmpfs; /dev is private anyway.
	check(filepath.Join(tmp, "a", "exists"), filepath.Join(tmp, "a", "exists"))
	check("/dev/termination-log", "/dev/termination-log")
	// A missing mount point: a tmpfs over its deepest existing ancestor,
	// reached through symlinks.
	check(filepath.Join(tmp, "link", "new", "deeper"), filepath.Join(tmp, "a", "new", "deeper"), filepath.Join(tmp, "a"))
	check(filepath.Join(tmp, "a", "other"), filepath.Join(tmp, "a", "other"), filepath.Join(tmp, "a"))
	// A root inside a later, wider root is dropped.
	check(filepath.Join(tmp, "deep", "x", "y"), filepath.Join(tmp, "deep", "x", "y"), filepath.Join(tmp, "a"), filepath.Join(tmp, "deep", "x"))
	check(filepath.Join(tmp, "deep", "z"), filepath.Join(tmp, "deep", "z"), filepath.Join(tmp, "a"), filepath.Join(tmp, "deep"))

	for path, why := range map[string]string{
		filepath.Join(tmp, "missing"): "would hide " + filepath.Join(tmp, "keep"),
		"/proc/x":                     "below /proc",
		"/":                           "over /",
		"relative/x":                  "not absolute",
	} {
		if _, err := mp.target(path); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("target(%s): err %v, want %q", path, err, why)
		}
	}
}

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"POD_NAME": "node-1", "EMPTY": ""}
	for in, want := range map[string]string{
		"$(POD_NAME)":             "node-1",
		"data/$(POD_NAME)/x":      "data/node-1/x",
		"$$(POD_NAME)":            "$(POD_NAME)",
		"$(UNKNOWN)-$(EMPTY)":     "$(UNKNOWN)-",
		"$(POD_NAME":              "$(POD_NAME",
		"cost: $5 $":              "cost: $5 $",
		"--termination-log=/dev/": "--termination-log=/dev/",
	} {
		if got := expandVars(in, vars); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}
