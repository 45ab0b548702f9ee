package citanode

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi"
)

// metrics are what the nodes' APIs said, by namespace and node.
type metrics struct {
	height, peers, answered *prometheus.GaugeVec
}

func newMetrics() *metrics {
	labels := []string{"namespace", "node"}
	return &metrics{
		height: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cita_node_block_height", Help: "The block height a CitaNode's node last reported.",
		}, labels),
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cita_node_peers", Help: "The peers a CitaNode's node last reported.",
		}, labels),
		answered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cita_node_last_answer_timestamp_seconds", Help: "When a CitaNode's node API last answered (its age: time() - this).",
		}, labels),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.height, m.peers, m.answered} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) observe(cn *citav1.CitaNode, s nodeapi.Status, now time.Time) {
	m.height.WithLabelValues(cn.Namespace, cn.Name).Set(float64(s.Height))
	m.peers.WithLabelValues(cn.Namespace, cn.Name).Set(float64(s.Peers))
	m.answered.WithLabelValues(cn.Namespace, cn.Name).Set(float64(now.Unix()))
}

func (m *metrics) forget(key cache.ObjectName) {
	for _, g := range []*prometheus.GaugeVec{m.height, m.peers, m.answered} {
		g.DeleteLabelValues(key.Namespace, key.Name)
	}
}
