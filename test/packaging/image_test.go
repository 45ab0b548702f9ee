package packaging

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cita-cloud/cita-node-operator/hack/image/preset"
)

// imageOf is what a Dockerfile stage or a hack/image preset makes of the image:
// what the two ways of building it must agree on.
type imageOf struct {
	Binary, Path string // the make build binary and where it lands
	User         string
	Entrypoint   []string
	Expose       []string // PORT/PROTO, sorted
}

func stageImage(t *testing.T, s *stage) imageOf {
	t.Helper()
	var img imageOf
	copies := s.find("COPY --from=build ")
	if len(copies) != 1 {
		t.Fatalf("stage %s: %d COPY --from=build, want the one binary: %q", s.name, len(copies), copies)
	}
	if f := strings.Fields(copies[0]); len(f) == 4 && strings.HasPrefix(f[2], "/out/") {
		img.Binary, img.Path = path.Base(f[2]), f[3]
	} else {
		t.Fatalf("cannot parse %q", copies[0])
	}
	if users := s.find("USER "); len(users) == 1 {
		img.User = strings.TrimPrefix(users[0], "USER ")
	} else {
		t.Errorf("stage %s: USER %q, want one", s.name, users)
	}
	if eps := s.find("ENTRYPOINT "); len(eps) == 1 {
		if err := json.Unmarshal([]byte(strings.TrimPrefix(eps[0], "ENTRYPOINT ")), &img.Entrypoint); err != nil {
			t.Errorf("stage %s: %q is not the exec form: %v", s.name, eps[0], err)
		}
	} else {
		t.Errorf("stage %s: ENTRYPOINT %q, want one", s.name, eps)
	}
	for _, e := range s.find("EXPOSE ") {
		for _, p := range strings.Fields(strings.TrimPrefix(e, "EXPOSE ")) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			img.Expose = append(img.Expose, p)
		}
	}
	slices.Sort(img.Expose)
	return img
}

func presetImage(p preset.Preset) imageOf {
	img := imageOf{Binary: p.Binary, Path: p.Path, User: p.User, Entrypoint: p.Entrypoint, Expose: slices.Clone(p.Expose)}
	slices.Sort(img.Expose)
	return img
}

// TestImagePresetsMatchDockerfile keeps the two builds of each image in step:
// the Dockerfile's stage (for users with Docker) and hack/image's preset (make
// image, make image-job). Their bases differ on purpose (see the preset
// package); what runs, as whom, on which ports must not.
func TestImagePresetsMatchDockerfile(t *testing.T) {
	df := parseDockerfile(t)
	for _, p := range []preset.Preset{preset.Operator, preset.Job} {
		t.Run(p.Name, func(t *testing.T) {
			s := df.stage(p.Name)
			if s == nil {
				t.Fatalf("no %s stage in the Dockerfile", p.Name)
			}
			if diff := cmp.Diff(stageImage(t, s), presetImage(p)); diff != "" {
				t.Errorf("Dockerfile stage %s vs hack/image -preset %s (-docker +preset):\n%s", p.Name, p.Name, diff)
			}
		})
	}

	// The job image's default base is the cloud-op image the Dockerfile and
	// the Makefile take cloud-op from.
	cloudop := df.stage("cloudop")
	if cloudop == nil {
		t.Fatal("no cloudop stage")
	}
	if got := df.expand(t, cloudop.base); got != preset.Job.Base {
		t.Errorf("Dockerfile cloud-op image %s, job preset's base %s", got, preset.Job.Base)
	}
	makefile, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]string{"CLOUD_OP_IMAGE": preset.CloudOpImage, "CLOUD_OP_TAG": preset.CloudOpTag} {
		m := regexp.MustCompile(`(?m)^` + v + `\s*\?=\s*(\S+)\s*$`).FindSubmatch(makefile)
		got := ""
		if m != nil {
			got = string(m[1])
		}
		if got != want {
			t.Errorf("Makefile %s default %q, preset says %q", v, got, want)
		}
	}
}

// TestImageMakefileTargetsUsePresets: make image and make image-job build with
// the presets compared above, from make build's binaries.
func TestImageMakefileTargetsUsePresets(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for target, p := range map[string]string{"image": "operator", "image-job": "job"} {
		_, rest, ok := strings.Cut(string(data), "\n"+target+":")
		if !ok {
			t.Errorf("Makefile has no %s target", target)
			continue
		}
		lines := strings.Split(rest, "\n")
		if deps := strings.Fields(strings.SplitN(lines[0], "##", 2)[0]); !slices.Contains(deps, "build") {
			t.Errorf("%s depends on %v, want build", target, deps)
		}
		var recipe strings.Builder
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "\t") {
				break
			}
			recipe.WriteString(l)
		}
		if !strings.Contains(recipe.String(), "./hack/image") || !strings.Contains(recipe.String(), "-preset "+p) {
			t.Errorf("%s: recipe %q does not run hack/image -preset %s", target, recipe.String(), p)
		}
		if strings.Contains(recipe.String(), "docker ") {
			t.Errorf("%s: recipe %q needs Docker", target, recipe.String())
		}
	}
}
