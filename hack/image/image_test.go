package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/cita-cloud/cita-node-operator/hack/image/preset"
)

// binDir is a fake bin/ as make build leaves it.
func binDir(t *testing.T, operator, job string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cita-node-operator"), operator, 0o700)
	writeFile(t, filepath.Join(dir, "cita-node-job"), job, 0o750)
	return dir
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// build runs the tool and returns the digest it printed.
func build(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("image %q: %v\n%s", args, err, stderr.String())
	}
	d := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("image %q printed %q, want a digest", args, d)
	}
	return d
}

// readBack reads a written tarball the way a base is read.
func readBack(t *testing.T, p string) (v1.Image, *v1.ConfigFile) {
	t.Helper()
	img, cleanup, err := loadLocal(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return img, cf
}

type tarEntry struct {
	hdr  tar.Header
	data string
}

// files are the entries of every layer, by path, the later layer winning.
func files(t *testing.T, img v1.Image) map[string]tarEntry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]tarEntry{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(tr)
			out[h.Name] = tarEntry{hdr: *h, data: string(data)}
		}
		rc.Close()
	}
	return out
}

func TestImageReproducible(t *testing.T) {
	bin := binDir(t, "operator v1", "job v1")
	out := t.TempDir()
	first := build(t, "-preset", "operator", "-bin", bin, "-tag", "example.com/op:v1", "-o", filepath.Join(out, "a.tar"))

	// Another checkout: other paths, newer mtimes, the same bytes.
	other := binDir(t, "operator v1", "job v1")
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(other, "cita-node-operator"), later, later)
	second := build(t, "-preset", "operator", "-bin", other, "-tag", "example.com/op:v1", "-o", filepath.Join(out, "b.tar"))
	if first != second {
		t.Errorf("same binary, digests %s and %s", first, second)
	}
	a, _ := os.ReadFile(filepath.Join(out, "a.tar"))
	b, _ := os.ReadFile(filepath.Join(out, "b.tar"))
	if !bytes.Equal(a, b) {
		t.Error("same inputs, different tarballs")
	}

	changed := build(t, "-preset", "operator", "-bin", binDir(t, "operator v2", "job v1"), "-o", filepath.Join(out, "c.tar"))
	if changed == first {
		t.Errorf("changed binary, same digest %s", first)
	}

	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dated := build(t, "-preset", "operator", "-bin", bin, "-tag", "example.com/op:v1", "-o", filepath.Join(out, "d.tar"))
	if dated == first {
		t.Error("SOURCE_DATE_EPOCH does not reach the image")
	}
	img, cf := readBack(t, filepath.Join(out, "d.tar"))
	want := time.Unix(1700000000, 0)
	if !cf.Created.Time.Equal(want) || !cf.History[len(cf.History)-1].Created.Time.Equal(want) {
		t.Errorf("created %v, history %v: want %v", cf.Created, cf.History, want)
	}
	if e := files(t, img)["cita-node-operator"]; !e.hdr.ModTime.Equal(want) {
		t.Errorf("file mtime %v, want %v", e.hdr.ModTime, want)
	}
}

func TestImageOperatorPreset(t *testing.T) {
	bin := binDir(t, "operator", "job")
	out := filepath.Join(t.TempDir(), "images", "operator.tar")
	digest := build(t, "-preset", "operator", "-bin", bin, "-tag", "ghcr.io/cita-cloud/cita-node-operator:dev", "-o", out)

	img, cf := readBack(t, out)
	if d, _ := img.Digest(); d.String() != digest {
		t.Errorf("printed %s, tarball holds %s", digest, d)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("created %v, want the epoch", cf.Created)
	}
	c := cf.Config
	if diff := cmp.Diff([]string{"/cita-node-operator"}, c.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	if c.Cmd != nil || c.User != "65532:65532" {
		t.Errorf("cmd %q user %q, want none and 65532:65532", c.Cmd, c.User)
	}
	if diff := cmp.Diff(map[string]struct{}{"8080/tcp": {}, "8081/tcp": {}}, c.ExposedPorts); diff != "" {
		t.Errorf("exposed ports (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{defaultPath}, c.Env); diff != "" {
		t.Errorf("env on scratch (-want +got):\n%s", diff)
	}

	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Errorf("%d layers on scratch, want 1", len(layers))
	}
	fs := files(t, img)
	e, ok := fs["cita-node-operator"]
	if !ok {
		t.Fatalf("no /cita-node-operator in %v", keys(fs))
	}
	if e.hdr.Mode != 0o755 || e.hdr.Uid != 0 || e.hdr.Gid != 0 || e.hdr.Uname != "" || e.hdr.Gname != "" || e.data != "operator" {
		t.Errorf("/cita-node-operator: mode %o owner %d:%d (%q:%q) data %q, want 755 0:0 unnamed",
			e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, e.hdr.Uname, e.hdr.Gname, e.data)
	}
	for _, shell := range []string{"bin/sh", "bin/", "bin/busybox"} {
		if _, ok := fs[shell]; ok {
			t.Errorf("operator image has /%s, want no shell", shell)
		}
	}

	// ctr images import names the image by index.json's annotations.
	idx := readIndexJSON(t, out)
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %d manifests, want 1", len(idx.Manifests))
	}
	m := idx.Manifests[0]
	for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		if got := m.Annotations[k]; got != "ghcr.io/cita-cloud/cita-node-operator:dev" {
			t.Errorf("index.json %s = %q", k, got)
		}
	}
	if m.Digest.String() != digest || m.Platform == nil || !m.Platform.Equals(linuxAMD64) {
		t.Errorf("index.json entry %+v: want %s for linux/amd64", m, digest)
	}
}

func readIndexJSON(t *testing.T, p string) v1.IndexManifest {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no index.json in %s: %v", p, err)
		}
		if h.Name == "index.json" {
			var idx v1.IndexManifest
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				t.Fatal(err)
			}
			return idx
		}
	}
}

func keys(m map[string]tarEntry) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// A stand-in for the cloud-op image, built with the tool itself.
func buildBase(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cloud-op"), "#!/bin/sh\n", 0o755)
	base := filepath.Join(dir, "base.tar")
	build(t, "-file", "/usr/bin/cloud-op="+filepath.Join(dir, "cloud-op"),
		"-env", "PATH=/usr/bin:/bin", "-env", "CLOUD_OP_HOME=/data",
		"-entrypoint", "/usr/bin/cloud-op,--help", "-user", "1000", "-o", base)
	return base
}

func TestImageJobPresetOnLocalBase(t *testing.T) {
	ociBase := buildBase(t)
	baseImg, _ := readBack(t, ociBase)
	// The same base as `docker save` before Docker 25 writes it.
	dockerBase := filepath.Join(t.TempDir(), "base-docker.tar")
	if err := tarball.WriteToFile(dockerBase, name.MustParseReference("example.com/cloud-op:test"), baseImg); err != nil {
		t.Fatal(err)
	}
	baseDiffIDs := diffIDs(t, baseImg)

	for format, base := range map[string]string{"oci-layout": ociBase, "docker-archive": dockerBase} {
		t.Run(format, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "job.tar")
			build(t, "-preset", "job", "-base", base, "-bin", binDir(t, "operator", "job"), "-env", "EXTRA=1",
				"-tag", "ghcr.io/cita-cloud/cita-node-operator-job:dev", "-o", out)
			img, cf := readBack(t, out)

			got := diffIDs(t, img)
			if len(got) != len(baseDiffIDs)+1 || !slices.Equal(got[:len(baseDiffIDs)], baseDiffIDs) {
				t.Errorf("layers %v, want the base's %v and one more", got, baseDiffIDs)
			}
			if diff := cmp.Diff([]string{"PATH=/usr/bin:/bin", "CLOUD_OP_HOME=/data", "EXTRA=1"}, cf.Config.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"/usr/local/bin/cita-node-job"}, cf.Config.Entrypoint); diff != "" {
				t.Errorf("entrypoint (-want +got):\n%s", diff)
			}
			if cf.Config.User != "0:0" || cf.Config.Cmd != nil || len(cf.Config.ExposedPorts) != 0 {
				t.Errorf("user %q cmd %q ports %v, want 0:0, none, none", cf.Config.User, cf.Config.Cmd, cf.Config.ExposedPorts)
			}
			if cf.OS != "linux" || cf.Architecture != "amd64" {
				t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
			}
			fs := files(t, img)
			job := fs["usr/local/bin/cita-node-job"]
			if job.data != "job" || job.hdr.Mode != 0o755 || job.hdr.Uid != 0 || job.hdr.Gid != 0 {
				t.Errorf("/usr/local/bin/cita-node-job: %+v, want the job binary, 0755, 0:0", job.hdr)
			}
			if _, ok := fs["usr/bin/cloud-op"]; !ok {
				t.Errorf("the base's /usr/bin/cloud-op is gone: %v", keys(fs))
			}
		})
	}
}

func diffIDs(t *testing.T, img v1.Image) []string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range cf.RootFS.DiffIDs {
		out = append(out, h.String())
	}
	return out
}

func TestImageLayerEntries(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "busybox"), "bb", 0o711)
	writeFile(t, filepath.Join(dir, "conf"), "c", 0o600)
	out := filepath.Join(dir, "img.tar")
	build(t, "-file", "/bin/busybox="+filepath.Join(dir, "busybox"), "-file", "/etc/app/conf="+filepath.Join(dir, "conf"),
		"-symlink", "/bin/sh=/bin/busybox", "-expose", "53/udp", "-label", "a=b", "-entrypoint", `["/bin/sh","-c"]`, "-o", out)
	img, cf := readBack(t, out)

	var got []string
	for _, k := range keys(files(t, img)) {
		e := files(t, img)[k]
		got = append(got, strings.Join([]string{k, string(e.hdr.Typeflag), os.FileMode(e.hdr.Mode).String(), e.hdr.Linkname}, " "))
	}
	want := []string{
		"bin/ 5 -rwxr-xr-x ",
		"bin/busybox 0 -rwxr-xr-x ",
		"bin/sh 2 -rwxrwxrwx /bin/busybox",
		"etc/ 5 -rwxr-xr-x ",
		"etc/app/ 5 -rwxr-xr-x ",
		"etc/app/conf 0 -rw-r--r-- ",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/bin/sh", "-c"}, cf.Config.Entrypoint); diff != "" {
		t.Errorf("JSON entrypoint (-want +got):\n%s", diff)
	}
	if _, ok := cf.Config.ExposedPorts["53/udp"]; !ok || cf.Config.Labels["a"] != "b" {
		t.Errorf("ports %v labels %v", cf.Config.ExposedPorts, cf.Config.Labels)
	}
}

func TestImageErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no binary":        {[]string{"-preset", "operator", "-bin", dir, "-o", filepath.Join(dir, "x.tar")}, "cita-node-operator"},
		"unknown preset":   {[]string{"-preset", "nope", "-o", "x.tar"}, "operator or job"},
		"no output":        {[]string{"-preset", "operator"}, "-o FILE"},
		"push without tag": {[]string{"-push"}, "-push needs -tag"},
		"bad base":         {[]string{"-base", "Not A Ref!", "-o", "x.tar"}, "not an image reference"},
		"relative dest":    {[]string{"-file", "bin/x=" + dir, "-o", "x.tar"}, "absolute"},
		"bad port":         {[]string{"-expose", "http", "-o", "x.tar"}, "PORT"},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestImageContainerdName(t *testing.T) {
	for in, want := range map[string]string{
		"ghcr.io/cita-cloud/cita-node-operator:v1": "ghcr.io/cita-cloud/cita-node-operator:v1",
		"docker.io/citacloud/cloud-op:v6.7.0":      "docker.io/citacloud/cloud-op:v6.7.0",
		"busybox:1":                                "docker.io/library/busybox:1",
		"localhost:5000/op":                        "localhost:5000/op:latest",
	} {
		ref, err := name.NewTag(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := containerdName(ref); got != want {
			t.Errorf("containerdName(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestImagePresetsDefaultBase(t *testing.T) {
	if preset.Operator.Base != "scratch" || preset.Job.Base != "docker.io/citacloud/cloud-op:v6.7.0" {
		t.Errorf("bases %q, %q", preset.Operator.Base, preset.Job.Base)
	}
}
