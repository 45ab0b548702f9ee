package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsAndHealth: after an operation, /metrics exposes the named
// workqueues, the operations by kind and result and the operator's API
// requests by verb, resource and code; /healthz and /readyz answer.
func TestMetricsAndHealth(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-metrics")
	n := deployPython(t, ns, "mx", "mx-node0")
	mustApply(t, fallbackYAML(ns, "m", n, 3, ""))
	mustComplete(t, waitOp(t, "BlockHeightFallback", ns, "m", opTimeout))

	for _, path := range []string{"/healthz", "/readyz"} {
		eventually(t, opTimeout, path, func() (bool, string) {
			code, body := get(t, "http://"+env.operator.healthAddr+path)
			return code == 200, fmt.Sprintf("%d %s", code, body)
		})
	}
	code, body := get(t, "http://"+env.operator.metricsAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	for _, want := range []string{
		`workqueue_depth{name="BlockHeightFallback"}`,
		`workqueue_adds_total{name="Backup"}`,
		`cita_node_operator_operations_finished_total{kind="BlockHeightFallback",result="Complete"}`,
		`cita_node_operator_operation_duration_seconds_count{kind="BlockHeightFallback",result="Complete"}`,
		`cita_node_operator_nodes_stopped`,
		// Its own requests, as the real apiserver answered them.
		`cita_node_operator_api_requests_total{code="200",resource="blockheightfallbacks/status",verb="update"}`,
		`cita_node_operator_api_requests_total{code="201",resource="jobs",verb="create"}`,
		`cita_node_operator_api_requests_total{code="200",resource="deployments",verb="patch"}`,
		`cita_node_operator_api_requests_total{code="200",resource="pods",verb="watch"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
}
