package operations

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

func TestMetrics(t *testing.T) {
	d := deployments()[0]
	cr := fallbackOn(d)
	f := newFixture(t, append([]runtime.Object{cr}, d.objects...)...)
	reg := prometheus.NewRegistry()
	if err := f.c.register(reg); err != nil {
		t.Fatal(err)
	}
	gauge := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "cita_node_operator_nodes_stopped" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no nodes_stopped gauge")
		return 0
	}
	runUntilJob(t, f, d)
	if got := testutil.ToFloat64(f.c.metrics.started.WithLabelValues("BlockHeightFallback")); got != 1 {
		t.Errorf("started %v", got)
	}
	if got := gauge(); got != 1 {
		t.Errorf("nodes stopped while the Job runs: %v", got)
	}
	f.finishJob("fb-fallback", true, &jobargs.Result{Op: jobargs.OpFallback})
	runToEnd(t, f, "BlockHeightFallback", "fb", cr)
	for range 3 {
		f.mustSync("BlockHeightFallback", "fb") // idle syncs count nothing
	}
	if got := testutil.ToFloat64(f.c.metrics.finished.WithLabelValues("BlockHeightFallback", "Complete")); got != 1 {
		t.Errorf("finished Complete %v", got)
	}
	if got := testutil.ToFloat64(f.c.metrics.started.WithLabelValues("BlockHeightFallback")); got != 1 {
		t.Errorf("started counted again: %v", got)
	}
	if n := testutil.CollectAndCount(f.c.metrics.duration); n != 1 {
		t.Errorf("duration series %d", n)
	}
	if got := gauge(); got != 0 {
		t.Errorf("nodes stopped after the start: %v", got)
	}
}
