//go:build linux

package jobrunner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// mountPlan decides, on the host, where each of a container's mount points
// comes from. A mount path that exists on the host is bound over (in the
// container's namespace only). One that does not needs a directory to be
// created, which must never happen on the host: the helper mounts a tmpfs over
// the deepest ancestor that exists (a "tmpfs root") and makes the mount point
// inside. When that ancestor is / (e.g. /cita), the runner creates the
// top-level directory on the host, empty, and mounts the tmpfs over it.
//
// A tmpfs root must not hide what the container needs from the host: the
// runner's tools, the job binary, PATH directories and the system libraries
// (protect).
type mountPlan struct {
	protect []string
	roots   []string
	logf    func(format string, args ...any)
}

// protectedPaths are the host paths no tmpfs root may hide, symlinks resolved.
func protectedPaths(paths ...string) []string {
	var out []string
	for _, p := range append(paths, "/etc", "/lib", "/lib64", "/usr", "/bin", "/sbin") {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// target plans a mount at path and returns the path to mount at: the same
// path with the symlinks of its existing prefix resolved (/var/run/x becomes
// /run/x), so that the helper's checks and mkdirs see real directories.
func (mp *mountPlan) target(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("mount path %q is not absolute", path)
	}
	clean := filepath.Clean(path)
	if isUnder(clean, "/dev") {
		// The helper's private /dev, made from scratch.
		return clean, nil
	}
	existing, rest := clean, ""
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		}
		rest = filepath.Join(filepath.Base(existing), rest)
		existing = filepath.Dir(existing)
	}
	resolved, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", fmt.Errorf("mount path %q: %w", path, err)
	}
	full := filepath.Join(resolved, rest)
	if full == "/" {
		return "", fmt.Errorf("mount path %q: the runner does not mount over /", path)
	}
	for _, sys := range []string{"/proc", "/sys", "/dev"} {
		if isUnder(full, sys) {
			return "", fmt.Errorf("mount path %q: the runner does not mount below %s", path, sys)
		}
	}
	if rest == "" {
		return full, nil
	}
	for _, r := range mp.roots {
		if isUnder(full, r) {
			return full, nil
		}
	}
	root := resolved
	if root == "/" {
		root = "/" + strings.SplitN(rest, "/", 2)[0]
		if err := os.Mkdir(root, 0o755); err != nil && !os.IsExist(err) {
			return "", fmt.Errorf("creating the mount root %s on the host: %w", root, err)
		}
		if err == nil && mp.logf != nil {
			mp.logf("jobrunner: created the empty directory %s on the host: containers get a tmpfs over it, their mount points inside", root)
		}
	}
	for _, p := range mp.protect {
		if isUnder(p, root) {
			return "", fmt.Errorf("mount path %q: its mount point would need a tmpfs over %s, which would hide %s from the container", path, root, p)
		}
	}
	kept := mp.roots[:0]
	for _, r := range mp.roots {
		if !isUnder(r, root) {
			kept = append(kept, r)
		}
	}
	mp.roots = append(kept, root)
	return full, nil
}
