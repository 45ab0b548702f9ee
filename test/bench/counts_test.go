//go:build linux

package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseRequestCounts: the operator's request metric, as scraped, gives
// requests by verb and resource, response codes and 409s; other series are
// ignored; totals split writes from events and reads.
func TestParseRequestCounts(t *testing.T) {
	scrape := map[string]float64{
		`cita_node_operator_api_requests_total{code="200",resource="blockheightfallbacks/status",verb="update"}`: 5,
		`cita_node_operator_api_requests_total{code="409",resource="blockheightfallbacks/status",verb="update"}`: 1,
		`cita_node_operator_api_requests_total{code="201",resource="events",verb="create"}`:                      3,
		`cita_node_operator_api_requests_total{code="200",resource="configmaps",verb="get"}`:                     2,
		`cita_node_operator_api_requests_total{code="error",resource="pods",verb="watch"}`:                       1,
		`workqueue_depth{name="backups"}`: 7,
	}
	got := parseRequestCounts(scrape)
	want := requestCounts{
		byKey: map[reqKey]int{
			{"update", "blockheightfallbacks/status"}: 6,
			{"create", "events"}:                      3,
			{"get", "configmaps"}:                     2,
			{"watch", "pods"}:                         1,
		},
		statuses:  map[int]int{200: 7, 409: 1, 201: 3, 0: 1},
		conflicts: map[reqKey]int{{"update", "blockheightfallbacks/status"}: 1},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(requestCounts{}, reqKey{})); diff != "" {
		t.Errorf("parsed (-want +got):\n%s", diff)
	}
	all, writes, events := got.total()
	if all != 12 || writes != 6 || events != 3 {
		t.Errorf("total() = %d, %d, %d; want 12 requests, 6 writes, 3 event writes", all, writes, events)
	}
	// Two processes' counts add up; a phase is the difference of two scrapes.
	sum := got.add(got)
	if d := sum.sub(got); !cmp.Equal(d.byKey, got.byKey) || !cmp.Equal(d.conflicts, got.conflicts) {
		t.Errorf("(a+a)-a = %v, want %v", d.byKey, got.byKey)
	}
}
