package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cita-cloud/cita-node-operator/test/jobrunner"
)

// Heights the runner's fake cloud-op treats specially.
const (
	failingHeight = jobrunner.FailHeight
	// slowHeight: the fallback takes 4 seconds, then succeeds.
	slowHeight = jobrunner.DelayHeight + 4
)

var (
	hooksMu sync.Mutex
	hooks   = map[string]func(pod string){}
	runner  *jobrunner.Runner
)

// onJobPodStart registers a check run (per namespace) just before the runner
// starts a Job pod's container; nil removes it.
func onJobPodStart(ns string, f func(pod string)) {
	hooksMu.Lock()
	defer hooksMu.Unlock()
	if f == nil {
		delete(hooks, ns)
		return
	}
	hooks[ns] = f
}

func startRunner(ctx context.Context) (func(), error) {
	r, err := jobrunner.Start(ctx, jobrunner.Options{
		Cluster:   env.cluster,
		JobBinary: filepath.Join(env.bin, "cita-node-job"),
		BeforeStart: func(ns, name string) {
			hooksMu.Lock()
			f := hooks[ns]
			hooksMu.Unlock()
			if f != nil {
				f(name)
			}
		},
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "[runner] "+f+"\n", a...) },
	})
	if err != nil {
		return func() {}, fmt.Errorf("job runner: %w", err)
	}
	runner = r
	return r.Stop, nil
}

// jobDelay is a fallback height at which the fake cloud-op takes s seconds.
func jobDelay(s int64) int64 { return jobrunner.DelayHeight + s }

// runnerStarts counts the containers the runner started for a Job's pods.
func runnerStarts(ns, jobName string) int {
	n := 0
	for _, r := range runner.Runs() {
		if r.Namespace == ns && strings.HasPrefix(r.Name, jobName+"-") && r.Started {
			n++
		}
	}
	return n
}
