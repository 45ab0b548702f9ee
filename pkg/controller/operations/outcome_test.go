package operations

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// TestFallbackTellsWhatCloudOpDid: a fallback whose cloud-op found the node
// already at the height is Complete and says nothing was rolled back; one
// below the height fails with both heights (the job binary's reason); a
// real rollback reads as before. The node is started in every case.
func TestFallbackTellsWhatCloudOpDid(t *testing.T) {
	h := func(v int64) *int64 { return &v }
	no, yes := false, true
	for name, tc := range map[string]struct {
		ok          bool
		result      jobargs.Result
		wantPhase   citav1.Phase
		wantMessage string
		notMessage  string
	}{
		"already at the height": {ok: true, result: jobargs.Result{Op: jobargs.OpFallback, BlockHeight: 100, HeightBefore: h(100), RolledBack: &no},
			wantPhase: citav1.PhaseComplete, wantMessage: "the node was already at height 100, nothing was rolled back"},
		"below the height": {ok: false, result: jobargs.Result{Op: jobargs.OpFallback, BlockHeight: 100, HeightBefore: h(80),
			Error: "the node is at height 80, below the fallback's height 100: nothing was rolled back and the node's data is as it was"},
			wantPhase: citav1.PhaseFailed, wantMessage: "the node is at height 80, below the fallback's height 100"},
		"rolled back": {ok: true, result: jobargs.Result{Op: jobargs.OpFallback, BlockHeight: 100, HeightBefore: h(120), RolledBack: &yes},
			wantPhase: citav1.PhaseComplete, notMessage: "nothing was rolled back"},
	} {
		t.Run(name, func(t *testing.T) {
			d := deployments()[0]
			cr := fallbackOn(d)
			f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
			runUntilJob(t, f, d)
			f.finishJob("fb-fallback", tc.ok, &tc.result)
			st := runToEnd(t, f, "BlockHeightFallback", "fb", cr)
			if st.Status != tc.wantPhase {
				t.Fatalf("status %s: %s", st.Status, st.Message)
			}
			if tc.wantMessage != "" && !strings.Contains(st.Message, tc.wantMessage) {
				t.Errorf("message %q does not say %q", st.Message, tc.wantMessage)
			}
			if tc.notMessage != "" && strings.Contains(st.Message, tc.notMessage) {
				t.Errorf("message %q says %q", st.Message, tc.notMessage)
			}
			assertStartedWith(t, f, d, d.replicas)
			got := f.cr(cr).(*citav1.BlockHeightFallback).Status.HeightBefore
			if tc.ok && (got == nil || *got != *tc.result.HeightBefore) {
				t.Errorf("status.heightBefore %v, want %d", got, *tc.result.HeightBefore)
			}
		})
	}
}
