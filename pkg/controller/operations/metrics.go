package operations

import (
	"github.com/prometheus/client_golang/prometheus"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// metrics are what the operator's users watch: operations by kind and
// result, how long they take, and how many nodes it holds stopped now.
type metrics struct {
	started  *prometheus.CounterVec
	finished *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cita_node_operator_operations_started_total",
			Help: "Operations the operator began, by kind.",
		}, []string{"kind"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cita_node_operator_operations_finished_total",
			Help: "Operations that reached Complete or Failed, by kind and result.",
		}, []string{"kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cita_node_operator_operation_duration_seconds",
			Help:    "From the start of an operation to its end, by kind and result.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1s … ~4.5h
		}, []string{"kind", "result"}),
	}
}

// register adds the metrics, and a gauge of the nodes held stopped read
// from the cache at scrape time, to r.
func (c *Controller) register(r prometheus.Registerer) error {
	stopped := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cita_node_operator_nodes_stopped",
		Help: "Workloads (node StatefulSets and Deployments, helm chains) currently scaled to 0 by an operation.",
	}, func() float64 {
		n := 0
		for _, idx := range c.workloadIndexes {
			for _, key := range idx.ListIndexFuncValues(byHolder) {
				items, _ := idx.ByIndex(byHolder, key)
				for _, item := range items {
					if o, ok := metaOf(item); ok {
						if _, isStopped := nodeops.StoppedReplicas(&nodeops.Workload{Object: o}); isStopped {
							n++
						}
					}
				}
			}
		}
		return float64(n)
	})
	for _, col := range []prometheus.Collector{c.metrics.started, c.metrics.finished, c.metrics.duration, stopped} {
		if err := r.Register(col); err != nil {
			return err
		}
	}
	return nil
}

// observe counts a status change that was written.
func (c *Controller) observe(op *operation, before citav1.Phase) {
	st := op.status
	switch {
	case before == "" && st.Status == citav1.PhaseActive:
		c.metrics.started.WithLabelValues(op.kind.name).Inc()
	case before != st.Status && ended(st):
		result := string(st.Status)
		c.metrics.finished.WithLabelValues(op.kind.name, result).Inc()
		if st.StartTime != nil && st.EndTime != nil {
			c.metrics.duration.WithLabelValues(op.kind.name, result).Observe(st.EndTime.Sub(st.StartTime.Time).Seconds())
		}
	}
}
