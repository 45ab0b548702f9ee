// Package preset holds what the operator and job images are made of when
// hack/image builds them: one place that the tool reads and that
// test/packaging compares with the Dockerfile's operator and job stages.
package preset

// Preset is one image: a binary of `make build` on a base, and its config.
type Preset struct {
	Name string
	// Base is "scratch" or the default base image reference (-base overrides it).
	Base string
	// Binary is the file `make build` writes into bin/; Path is where it goes in the image.
	Binary, Path string
	User         string
	// Expose lists ports as PORT/PROTO, as the image config names them.
	Expose     []string
	Entrypoint []string
}

// Where the job image takes cloud-op from: CITA-Cloud's cloud-op image, the
// Dockerfile's and the Makefile's CLOUD_OP_IMAGE:CLOUD_OP_TAG.
const (
	CloudOpImage = "docker.io/citacloud/cloud-op"
	CloudOpTag   = "v6.7.0"
)

// Operator is the Dockerfile's operator stage. The base is scratch, not
// distroless: the static binary needs no libc, and the operator reads no CA
// bundle, passwd file or /tmp (it talks to the API server with the service
// account's CA and runs as a numeric user).
var Operator = Preset{
	Name:       "operator",
	Base:       "scratch",
	Binary:     "cita-node-operator",
	Path:       "/cita-node-operator",
	User:       "65532:65532",
	Expose:     []string{"8080/tcp", "8081/tcp"},
	Entrypoint: []string{"/cita-node-operator"},
}

// Job is the Dockerfile's job stage, built on CITA-Cloud's cloud-op image
// itself rather than on Debian with cloud-op copied in: that image already
// carries cloud-op on PATH with the glibc and libstdc++ it was built against.
var Job = Preset{
	Name:       "job",
	Base:       CloudOpImage + ":" + CloudOpTag,
	Binary:     "cita-node-job",
	Path:       "/usr/local/bin/cita-node-job",
	User:       "0:0",
	Entrypoint: []string{"/usr/local/bin/cita-node-job"},
}

// All are the presets by name.
var All = map[string]Preset{Operator.Name: Operator, Job.Name: Job}
