package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// linuxAMD64 is the only platform: CITA-Cloud publishes cloud-op for it only,
// and containerd skips an image whose config has no os/architecture.
var linuxAMD64 = v1.Platform{OS: "linux", Architecture: "amd64"}

// defaultPath is Docker's PATH for an image that sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type fileSpec struct{ Dest, Src string }

type symlinkSpec struct{ Link, Target string }

type imageSpec struct {
	Base       string
	Files      []fileSpec
	Symlinks   []symlinkSpec
	Entrypoint []string
	User       string
	Env        []string // K=V, set over the base's
	Expose     []string // PORT/PROTO
	Labels     map[string]string
	Epoch      time.Time
}

// buildImage is the base plus one layer and the spec's config. cleanup removes
// what reading a local base unpacked; call it once the image is written.
func buildImage(ctx context.Context, spec imageSpec) (v1.Image, func(), error) {
	base, cleanup, err := loadBase(ctx, spec.Base)
	if err != nil {
		return nil, nil, err
	}
	img, err := onBase(base, spec)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return img, cleanup, nil
}

// onBase adds the spec's layer and config to base.
func onBase(base v1.Image, spec imageSpec) (v1.Image, error) {
	baseCfg, err := base.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("base %s: config: %w", spec.Base, err)
	}
	if (baseCfg.OS != "" && baseCfg.OS != linuxAMD64.OS) || (baseCfg.Architecture != "" && baseCfg.Architecture != linuxAMD64.Architecture) {
		return nil, fmt.Errorf("base %s is %s/%s, want linux/amd64", spec.Base, baseCfg.OS, baseCfg.Architecture)
	}

	// The new layer's media type follows the base's manifest: an OCI
	// manifest with OCI layers, a Docker one with Docker layers.
	manifestType, err := base.MediaType()
	if err != nil {
		return nil, err
	}
	layerType := types.DockerLayer
	if manifestType == types.OCIManifestSchema1 {
		layerType = types.OCILayer
	}
	layer, err := buildLayer(spec.Files, spec.Symlinks, spec.Epoch, layerType)
	if err != nil {
		return nil, err
	}
	var added []string
	for _, f := range spec.Files {
		added = append(added, f.Dest)
	}
	for _, l := range spec.Symlinks {
		added = append(added, l.Link)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		// No source paths here: they differ between checkouts, the image must not.
		History: v1.History{Created: v1.Time{Time: spec.Epoch}, CreatedBy: "hack/image: " + strings.Join(added, " ")},
	})
	if err != nil {
		return nil, err
	}

	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = linuxAMD64.OS, linuxAMD64.Architecture
	cf.Created = v1.Time{Time: spec.Epoch}
	c := &cf.Config
	if spec.Entrypoint != nil {
		// As in a Dockerfile: an ENTRYPOINT drops the CMD the base had.
		c.Entrypoint, c.Cmd = spec.Entrypoint, nil
	}
	if spec.User != "" {
		c.User = spec.User
	}
	c.Env = mergeEnv(c.Env, spec.Env)
	if len(spec.Expose) > 0 && c.ExposedPorts == nil {
		c.ExposedPorts = map[string]struct{}{}
	}
	for _, p := range spec.Expose {
		c.ExposedPorts[p] = struct{}{}
	}
	if len(spec.Labels) > 0 && c.Labels == nil {
		c.Labels = map[string]string{}
	}
	for k, v := range spec.Labels {
		c.Labels[k] = v
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// mergeEnv sets each K=V of set over base, in place or appended, and keeps
// PATH from the base (a default when the base has none).
func mergeEnv(base, set []string) []string {
	env := slices.Clone(base)
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = append([]string{defaultPath}, env...)
	}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		if i := slices.IndexFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") }); i >= 0 {
			env[i] = kv
		} else {
			env = append(env, kv)
		}
	}
	return env
}

// loadBase resolves -base: scratch, an existing local path, else a registry
// reference.
func loadBase(ctx context.Context, base string) (v1.Image, func(), error) {
	noop := func() {}
	if base == "scratch" {
		img := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
		return img, noop, nil
	}
	if _, err := os.Stat(base); err == nil {
		return loadLocal(base)
	}
	ref, err := name.ParseReference(base)
	if err != nil {
		return nil, nil, fmt.Errorf("base %q: not scratch, not a local file, not an image reference: %w", base, err)
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(linuxAMD64), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return nil, nil, fmt.Errorf("cannot pull base %s (give a local image tarball with -base to build without a registry): %w", ref, err)
	}
	return img, noop, nil
}

// buildLayer writes the files and symlinks, with their parent directories, as
// one gzipped tar whose bytes depend only on the contents, the destination
// paths, the files' executable bits and epoch.
func buildLayer(files []fileSpec, links []symlinkSpec, epoch time.Time, mt types.MediaType) (v1.Layer, error) {
	type entry struct {
		hdr *tar.Header
		src string
	}
	entries := map[string]entry{}
	header := func(name string, typ byte, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: epoch}
	}
	add := func(dest string, e entry) error {
		clean := path.Clean("/" + dest)
		if clean == "/" || !strings.HasPrefix(dest, "/") {
			return fmt.Errorf("%q: want an absolute path in the image", dest)
		}
		name := strings.TrimPrefix(clean, "/")
		if _, dup := entries[name]; dup {
			return fmt.Errorf("%s added twice", clean)
		}
		e.hdr.Name = name
		entries[name] = e
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if prev, ok := entries[dir+"/"]; ok && prev.hdr.Typeflag != tar.TypeDir {
				return fmt.Errorf("/%s is both a directory and a file", dir)
			}
			entries[dir+"/"] = entry{hdr: header(dir+"/", tar.TypeDir, 0o755)}
		}
		return nil
	}
	for _, f := range files {
		fi, err := os.Stat(f.Src)
		if err != nil {
			return nil, fmt.Errorf("-file %s: %w", f.Dest, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("-file %s=%s: not a regular file", f.Dest, f.Src)
		}
		mode := int64(0o644)
		if fi.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		h := header("", tar.TypeReg, mode)
		h.Size = fi.Size()
		if err := add(f.Dest, entry{hdr: h, src: f.Src}); err != nil {
			return nil, err
		}
	}
	for _, l := range links {
		h := header("", tar.TypeSymlink, 0o777)
		h.Linkname = l.Target
		if err := add(l.Link, entry{hdr: h}); err != nil {
			return nil, err
		}
	}
	for name := range entries {
		if dir, ok := strings.CutSuffix(name, "/"); ok {
			if _, clash := entries[dir]; clash {
				return nil, fmt.Errorf("/%s is both a directory and a file", dir)
			}
		}
	}

	var buf bytes.Buffer
	// A zero gzip header (no name, no mtime) and a fixed level: the same tar
	// always compresses to the same bytes.
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		e := entries[name]
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if e.src == "" {
			continue
		}
		if err := copyFile(tw, e.src, e.hdr.Size); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	gz := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(mt))
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, f)
	if err == nil && n != size {
		err = fmt.Errorf("%s changed size while being read", src)
	}
	return err
}
