package packaging

import (
	"debug/elf"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// There is no Docker engine here: the Dockerfile is checked by parsing it, and
// its build command is run as it stands there.

type stage struct {
	name, base string
	// instructions, continuation lines joined, e.g. "COPY --from=build /out/x /x".
	instructions []string
}

type dockerfile struct {
	globalArgs map[string]string // ARGs before the first FROM, with their defaults
	stages     []*stage
}

func parseDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	df := &dockerfile{globalArgs: map[string]string{}}
	for _, l := range lines {
		fields := strings.Fields(l)
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			args := slices.DeleteFunc(fields[1:], func(f string) bool { return strings.HasPrefix(f, "--platform=") })
			s := &stage{base: args[0]}
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				s.name = args[2]
			} else if len(args) != 1 {
				t.Fatalf("cannot parse %q", l)
			}
			df.stages = append(df.stages, s)
		case "ARG":
			if len(df.stages) == 0 {
				name, def, _ := strings.Cut(fields[1], "=")
				df.globalArgs[name] = def
				continue
			}
			fallthrough
		default:
			if len(df.stages) == 0 {
				t.Fatalf("%q before the first FROM", l)
			}
			s := df.stages[len(df.stages)-1]
			s.instructions = append(s.instructions, l)
		}
	}
	return df
}

func (df *dockerfile) stage(name string) *stage {
	for _, s := range df.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (s *stage) find(prefix string) []string {
	var out []string
	for _, i := range s.instructions {
		if strings.HasPrefix(i, prefix) {
			out = append(out, i)
		}
	}
	return out
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// expand substitutes the global ARGs' defaults into a FROM reference.
func (df *dockerfile) expand(t *testing.T, ref string) string {
	t.Helper()
	return argRef.ReplaceAllStringFunc(ref, func(m string) string {
		name := argRef.FindStringSubmatch(m)[1]
		v, ok := df.globalArgs[name]
		if !ok || v == "" {
			t.Errorf("FROM %s: ARG %s has no default before the first FROM", ref, name)
		}
		return v
	})
}

// pinned reports whether ref names a specific tag (not latest) or a digest.
func pinned(ref string) bool {
	if _, digest, ok := strings.Cut(ref, "@"); ok {
		return strings.HasPrefix(digest, "sha256:") && len(digest) == len("sha256:")+64
	}
	last := path.Base(ref)
	_, tag, ok := strings.Cut(last, ":")
	return ok && tag != "" && tag != "latest"
}

func TestDockerfileBasesPinned(t *testing.T) {
	df := parseDockerfile(t)
	names := map[string]bool{}
	for _, s := range df.stages {
		if !names[s.base] {
			ref := df.expand(t, s.base)
			if !pinned(ref) {
				t.Errorf("FROM %s (%s): not pinned to a specific tag or digest", s.base, ref)
			}
		}
		if s.name != "" {
			names[s.name] = true
		}
		for _, c := range s.find("COPY --from=") {
			from := strings.TrimPrefix(strings.Fields(c)[1], "--from=")
			if !names[from] {
				t.Errorf("stage %s: %q copies from %s, not an earlier stage (COPY --from does not expand build args)", s.name, c, from)
			}
		}
	}
	if got := df.globalArgs["CLOUD_OP_IMAGE"]; got != "docker.io/citacloud/cloud-op" {
		t.Errorf("ARG CLOUD_OP_IMAGE default = %q", got)
	}
	if got := df.globalArgs["CLOUD_OP_TAG"]; got != "v6.7.0" {
		t.Errorf("ARG CLOUD_OP_TAG default = %q", got)
	}
	if s := df.stage("cloudop"); s == nil || s.base != "${CLOUD_OP_IMAGE}:${CLOUD_OP_TAG}" {
		t.Errorf("want a stage `FROM ${CLOUD_OP_IMAGE}:${CLOUD_OP_TAG} AS cloudop`, got %+v", s)
	}
}

func TestDockerfileTargets(t *testing.T) {
	df := parseDockerfile(t)

	op := df.stage("operator")
	if op == nil {
		t.Fatal("no operator target")
	}
	if !strings.HasPrefix(op.base, "gcr.io/distroless/static") || !strings.Contains(op.base, "nonroot") {
		t.Errorf("operator base %s: want distroless static nonroot", op.base)
	}
	if got := op.find("USER "); len(got) != 1 || strings.HasPrefix(strings.TrimPrefix(got[0], "USER "), "0") ||
		strings.HasPrefix(strings.TrimPrefix(got[0], "USER "), "root") {
		t.Errorf("operator USER %v: want one non-root user", got)
	}
	if !slices.Contains(op.find("COPY "), "COPY --from=build /out/cita-node-operator /cita-node-operator") ||
		!slices.Contains(op.instructions, `ENTRYPOINT ["/cita-node-operator"]`) {
		t.Errorf("operator stage does not install and run /cita-node-operator: %q", op.instructions)
	}

	job := df.stage("job")
	if job == nil {
		t.Fatal("no job target")
	}
	// cloud-op needs glibc: no distroless/static, scratch or musl base.
	for _, bad := range []string{"distroless", "scratch", "alpine", "busybox"} {
		if strings.Contains(job.base, bad) {
			t.Errorf("job base %s has no glibc for cloud-op", job.base)
		}
	}
	copies := job.find("COPY ")
	if !slices.ContainsFunc(copies, func(c string) bool {
		return strings.HasPrefix(c, "COPY --from=cloudop ") && strings.HasSuffix(c, " /usr/local/bin/cloud-op")
	}) {
		t.Errorf("job stage does not copy cloud-op from the cloudop stage onto PATH: %q", copies)
	}
	if !slices.Contains(copies, "COPY --from=build /out/cita-node-job /usr/local/bin/cita-node-job") {
		t.Errorf("job stage does not install /usr/local/bin/cita-node-job: %q", copies)
	}
	if got := job.find("USER "); len(got) != 1 || (got[0] != "USER 0:0" && got[0] != "USER 0" && got[0] != "USER root") {
		t.Errorf("job USER %v: want root (the Job keeps file owners and chowns)", got)
	}

	if last := df.stages[len(df.stages)-1]; last.name != "operator" {
		t.Errorf("the default (last) target is %q, want operator", last.name)
	}
}

// goBuild is the Dockerfile's one `go build` command: its environment and its
// arguments after `go`.
type goBuild struct {
	env  []string
	args []string
}

func dockerfileGoBuild(t *testing.T) goBuild {
	t.Helper()
	var builds []goBuild
	for _, s := range parseDockerfile(t).stages {
		for _, run := range s.find("RUN ") {
			fields := strings.Fields(strings.TrimPrefix(run, "RUN "))
			i := slices.Index(fields, "go")
			if i < 0 || i+1 >= len(fields) || fields[i+1] != "build" {
				continue
			}
			var b goBuild
			for _, f := range fields[:i] {
				if strings.HasPrefix(f, "--mount=") {
					continue
				}
				if !strings.Contains(f, "=") {
					t.Fatalf("cannot parse %q", run)
				}
				b.env = append(b.env, f)
			}
			b.args = fields[i+1:]
			builds = append(builds, b)
		}
	}
	if len(builds) != 1 {
		t.Fatalf("%d go build commands in the Dockerfile, want 1", len(builds))
	}
	return builds[0]
}

// makefileBuildPackages are the packages of the Makefile's build target.
func makefileBuildPackages(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\nbuild:")
	if !ok {
		t.Fatal("Makefile has no build target")
	}
	for _, l := range strings.Split(rest, "\n")[1:] {
		if !strings.HasPrefix(l, "\t") {
			break
		}
		if strings.Contains(l, " build ") {
			return packagesOf(strings.Fields(l))
		}
	}
	t.Fatal("Makefile's build target runs no go build")
	return nil
}

func packagesOf(args []string) []string {
	var pkgs []string
	for _, a := range args {
		if strings.HasPrefix(a, "./") {
			pkgs = append(pkgs, a)
		}
	}
	slices.Sort(pkgs)
	return pkgs
}

func TestDockerfileBuildsLikeMakefile(t *testing.T) {
	b := dockerfileGoBuild(t)
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"} {
		if !slices.Contains(b.env, want) {
			t.Errorf("go build environment %v lacks %s", b.env, want)
		}
	}
	if !slices.Contains(b.args, "-trimpath") {
		t.Errorf("go build %v: no -trimpath", b.args)
	}
	if diff := cmp.Diff(makefileBuildPackages(t), packagesOf(b.args)); diff != "" {
		t.Errorf("packages built by the Dockerfile vs the Makefile's build target (-make +docker):\n%s", diff)
	}
}

// TestBinariesStatic runs the Dockerfile's go build (output into a temp dir)
// and checks both binaries are static linux/amd64 executables: the operator
// image has no libc, and the job image must not depend on its base's.
func TestBinariesStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries; skipped with -short")
	}
	b := dockerfileGoBuild(t)
	out := t.TempDir()
	args := slices.Clone(b.args)
	i := slices.Index(args, "-o")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("go build %v: no -o", args)
	}
	args[i+1] = out + string(filepath.Separator)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	run(t, append(os.Environ(), b.env...), goBin, args...)

	for _, pkg := range packagesOf(b.args) {
		name := path.Base(pkg)
		t.Run(name, func(t *testing.T) {
			f, err := elf.Open(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
				t.Errorf("%s: machine %v class %v, want x86-64", name, f.Machine, f.Class)
			}
			if f.Type != elf.ET_EXEC {
				t.Errorf("%s: ELF type %v, want a non-PIE static executable (ET_EXEC)", name, f.Type)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("%s: has %v: dynamically linked", name, p.Type)
				}
			}
			if s := f.Section(".dynamic"); s != nil {
				t.Errorf("%s: has a .dynamic section", name)
			}
			if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
				t.Errorf("%s: imported libraries %v (err %v)", name, libs, err)
			}
		})
	}
}

func TestPinned(t *testing.T) {
	for ref, want := range map[string]bool{
		"debian:12.11-slim":                                        true,
		"gcr.io/distroless/static-debian12:nonroot":                true,
		"golang:1.26.8-bookworm@sha256:" + strings.Repeat("a", 64): true,
		"debian":                   false,
		"debian:latest":            false,
		"localhost:5000/operator":  false,
		"registry:5000/operator:1": true,
		"img@sha256:abc":           false,
	} {
		if got := pinned(ref); got != want {
			t.Errorf("pinned(%q) = %v, want %v", ref, got, want)
		}
	}
}
