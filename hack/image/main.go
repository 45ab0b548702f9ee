// Command image builds the operator's and the Jobs' container images without a
// Docker engine: the binaries of `make build` in one new layer on a base
// (scratch, a registry image or a local image tarball), written as an OCI
// image-layout tarball for `ctr -n k8s.io images import` or pushed to a
// registry. The same inputs give the same digest.
//
//	go run ./hack/image -preset operator -tag ghcr.io/cita-cloud/cita-node-operator:dev -o bin/images/operator.tar
//	go run ./hack/image -preset job -base docker.io/citacloud/cloud-op:v6.7.0 -tag ghcr.io/cita-cloud/cita-node-operator-job:dev -o bin/images/job.tar
//	go run ./hack/image -base scratch -file /bin/busybox=./busybox -symlink /bin/sh=/bin/busybox -entrypoint /bin/sh -o base.tar
//
// Flags:
//
//	-preset operator|job   the Dockerfile's operator or job stage (hack/image/preset); other flags add to it
//	-bin DIR               where the presets take their binary from (default bin, as make build writes it)
//	-base REF              scratch; a local OCI image-layout directory, OCI-layout tar or docker-archive tar;
//	                       else a registry reference, pulled for linux/amd64 (default: the preset's, else scratch)
//	-file /DEST=SRC        add SRC at /DEST in the new layer (repeated); mode 0755 if SRC is executable, else 0644
//	-symlink /LINK=TARGET  add a symlink (repeated)
//	-entrypoint EP         a JSON array (["/a","b"]) or a comma-separated list (/a,b); clears the base's CMD
//	-user U                USER, e.g. 65532:65532
//	-env K=V               set K (repeated); the base's env is kept, PATH too (a default on scratch)
//	-expose PORT[/PROTO]   expose a port, tcp unless given (repeated)
//	-label K=V             set a label (repeated)
//	-tag NAME:TAG          the image's name: in the tarball's index.json, and where -push pushes
//	-o FILE                write an OCI image-layout tarball
//	-push                  push to -tag's registry (credentials from the Docker config, as docker login writes them)
//
// The new layer's files are owned 0:0, its parent directories are created, and
// every timestamp (tar entries, config created, history) is SOURCE_DATE_EPOCH
// or 0. The manifest digest is printed on stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cita-cloud/cita-node-operator/hack/image/preset"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// listFlag is a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		presetName                        = fs.String("preset", "", "operator or job: the Dockerfile's stage of that name")
		binDir                            = fs.String("bin", "bin", "where -preset takes its binary from")
		base                              = fs.String("base", "", "scratch, a local image tarball or layout directory, or a registry reference (default: the preset's, else scratch)")
		entrypoint                        = fs.String("entrypoint", "", `ENTRYPOINT: a JSON array (["/a","b"]) or a comma-separated list`)
		user                              = fs.String("user", "", "USER")
		tag                               = fs.String("tag", "", "image name, registry/name:tag")
		out                               = fs.String("o", "", "write an OCI image-layout tarball here")
		push                              = fs.Bool("push", false, "push to the registry of -tag")
		files, links, env, expose, labels listFlag
	)
	fs.Var(&files, "file", "/DEST=SRC: add a file (repeated)")
	fs.Var(&links, "symlink", "/LINK=TARGET: add a symlink (repeated)")
	fs.Var(&env, "env", "K=V: set an environment variable (repeated)")
	fs.Var(&expose, "expose", "PORT[/PROTO]: expose a port (repeated)")
	fs.Var(&labels, "label", "K=V: set a label (repeated)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *out == "" && !*push {
		return errors.New("nothing to do: give -o FILE, -push or both")
	}
	if *push && *tag == "" {
		return errors.New("-push needs -tag")
	}

	spec := imageSpec{Base: *base, User: *user, Labels: map[string]string{}}
	if *presetName != "" {
		p, ok := preset.All[*presetName]
		if !ok {
			return fmt.Errorf("-preset %q: want operator or job", *presetName)
		}
		if spec.Base == "" {
			spec.Base = p.Base
		}
		if spec.User == "" {
			spec.User = p.User
		}
		spec.Entrypoint = p.Entrypoint
		spec.Expose = append(spec.Expose, p.Expose...)
		spec.Files = append(spec.Files, fileSpec{Dest: p.Path, Src: filepath.Join(*binDir, p.Binary)})
	}
	if spec.Base == "" {
		spec.Base = "scratch"
	}
	if *entrypoint != "" {
		ep, err := parseEntrypoint(*entrypoint)
		if err != nil {
			return err
		}
		spec.Entrypoint = ep
	}
	for _, f := range files {
		dest, src, ok := strings.Cut(f, "=")
		if !ok || !strings.HasPrefix(dest, "/") || src == "" {
			return fmt.Errorf("-file %q: want /DEST=SRC, DEST absolute", f)
		}
		spec.Files = append(spec.Files, fileSpec{Dest: dest, Src: src})
	}
	for _, l := range links {
		link, target, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(link, "/") || target == "" {
			return fmt.Errorf("-symlink %q: want /LINK=TARGET, LINK absolute", l)
		}
		spec.Symlinks = append(spec.Symlinks, symlinkSpec{Link: link, Target: target})
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("-env %q: want K=V", e)
		}
	}
	spec.Env = env
	for _, p := range expose {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		port, proto, _ := strings.Cut(p, "/")
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			return fmt.Errorf("-expose %q: want PORT[/tcp|udp|sctp]", p)
		}
		spec.Expose = append(spec.Expose, p)
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("-label %q: want K=V", l)
		}
		spec.Labels[k] = v
	}
	var ref name.Tag
	if *tag != "" {
		var err error
		if ref, err = name.NewTag(*tag, name.StrictValidation); err != nil {
			return fmt.Errorf("-tag %q: want registry/name:tag: %w", *tag, err)
		}
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	spec.Epoch = epoch

	img, cleanup, err := buildImage(ctx, spec)
	if err != nil {
		return err
	}
	defer cleanup()
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if *out != "" {
		if err := writeOCIArchive(*out, img, ref, *tag != "", epoch); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
		fmt.Fprintf(stderr, "wrote %s (%s)\n", *out, *tag)
	}
	if *push {
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		fmt.Fprintf(stderr, "pushed %s@%s\n", ref, digest)
	}
	fmt.Fprintln(stdout, digest)
	return nil
}

func parseEntrypoint(s string) ([]string, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "[") {
		var ep []string
		if err := json.Unmarshal([]byte(s), &ep); err != nil {
			return nil, fmt.Errorf("-entrypoint %q: not a JSON array of strings: %w", s, err)
		}
		return ep, nil
	}
	return strings.Split(s, ","), nil
}

// sourceDateEpoch is the time every timestamp in the image gets: the
// reproducible-builds SOURCE_DATE_EPOCH, else the Unix epoch.
func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since the epoch", v)
	}
	return time.Unix(n, 0).UTC(), nil
}
