package main

import (
	"slices"
	"testing"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// TestEveryOpHasARunner: an operation jobargs declares (and so the controller may put in a
// Job) that the binary cannot run, or a runner for an operation jobargs does not know, is a
// mistake in one of the two tables. The runner's kind must agree with UsesCloudOp, which also
// decides whether the Job mounts the node's config.
func TestEveryOpHasARunner(t *testing.T) {
	for _, op := range jobargs.Ops {
		r, ok := runners[op]
		if !ok {
			t.Errorf("operation %s has no runner", op)
			continue
		}
		if (r.run != nil) == (r.withCloudOp != nil) {
			t.Errorf("runner of %s must have exactly one of run and withCloudOp", op)
		}
		if got, want := r.withCloudOp != nil, op.UsesCloudOp(); got != want {
			t.Errorf("runner of %s uses cloud-op: %v, jobargs says %v", op, got, want)
		}
	}
	for op := range runners {
		if !slices.Contains(jobargs.Ops, op) {
			t.Errorf("runner for %s, which jobargs does not declare", op)
		}
	}
}
