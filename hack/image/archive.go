package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// writeOCIArchive writes img as a tarball of an OCI image layout. When named,
// its index.json entry carries the name both as containerd's
// io.containerd.image.name (what `ctr images import` names the image by) and
// as org.opencontainers.image.ref.name (ctr 1.6 falls back to it, and takes a
// full reference there as it is); without a name ctr would call the image
// import-<date>. go-containerregistry writes the layout as a directory; the
// tar around it is ours, with fixed order, times and owners.
func writeOCIArchive(out string, img v1.Image, ref name.Tag, named bool, epoch time.Time) error {
	dir, err := os.MkdirTemp("", "image-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	opts := []layout.Option{layout.WithPlatform(linuxAMD64)}
	if named {
		n := containerdName(ref)
		opts = append(opts, layout.WithAnnotations(map[string]string{
			"io.containerd.image.name":          n,
			"org.opencontainers.image.ref.name": n,
		}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tarDir(tmp, dir, epoch); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// containerdName is the name as containerd stores it: the registry spelled
// out, docker.io for Docker Hub.
func containerdName(ref name.Tag) string {
	reg := ref.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + ref.RepositoryStr() + ":" + ref.TagStr()
}

// tarDir writes the tree under dir, in lexical order (WalkDir's), as root-owned
// entries with one mtime.
func tarDir(w io.Writer, dir string, epoch time.Time) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch})
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: fi.Size(), ModTime: epoch}); err != nil {
			return err
		}
		return copyFile(tw, p, fi.Size())
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// loadLocal reads a base from disk: an OCI image-layout directory, a tarball of
// one (as this tool, `docker save` since 25 or buildx write it), or a
// docker-archive tarball (`docker save` before 25).
func loadLocal(p string) (v1.Image, func(), error) {
	noop := func() {}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		img, err := imageFromLayout(p)
		return img, noop, err
	}
	isOCI, err := tarHas(p, "oci-layout")
	if err != nil {
		return nil, nil, fmt.Errorf("base %s: %w", p, err)
	}
	if !isOCI {
		img, err := tarball.ImageFromPath(p, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("base %s: neither an OCI layout nor a docker-archive tarball: %w", p, err)
		}
		return img, noop, nil
	}
	dir, err := os.MkdirTemp("", "image-base-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if err := untarLayout(p, dir); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("base %s: %w", p, err)
	}
	img, err := imageFromLayout(dir)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("base %s: %w", p, err)
	}
	return img, cleanup, nil
}

// imageFromLayout picks the linux/amd64 image of a layout, or its only image.
func imageFromLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	return pickImage(idx)
}

func pickImage(idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var fallback []v1.Descriptor
	for _, d := range m.Manifests {
		if d.Platform != nil && !d.Platform.Equals(linuxAMD64) {
			continue
		}
		switch {
		case d.MediaType.IsImage() && d.Platform != nil:
			return idx.Image(d.Digest)
		case d.MediaType.IsImage() || d.MediaType.IsIndex():
			fallback = append(fallback, d)
		}
	}
	if len(fallback) != 1 {
		return nil, fmt.Errorf("%d candidate images, want one for linux/amd64", len(fallback))
	}
	if d := fallback[0]; d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return pickImage(child)
	}
	return idx.Image(fallback[0].Digest)
}

func tarHas(p, want string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("not a tar: %w", err)
		}
		if path.Clean(h.Name) == want {
			return true, nil
		}
	}
}

// untarLayout unpacks the layout's own files (oci-layout, index.json, blobs/)
// and nothing that would land outside dir.
func untarLayout(p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || !(name == "oci-layout" || name == "index.json" || strings.HasPrefix(name, "blobs/")) || strings.Contains(name, "..") {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		w, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, tr)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}
