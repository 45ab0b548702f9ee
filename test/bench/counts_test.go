//go:build linux

package main

import (
	"strings"
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

// TestParseAPILoad: the apiserver's request and watch counters, summed
// over the labels the report does not split by; since keeps what grew.
func TestParseAPILoad(t *testing.T) {
	scrape := `# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="statefulsets",scope="resource",subresource="",verb="PATCH",version="v1"} 7
apiserver_request_total{code="409",component="apiserver",dry_run="",group="apps",resource="statefulsets",scope="resource",subresource="",verb="PATCH",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="citacloud.rivtower.com",resource="blockheightfallbacks",scope="resource",subresource="status",verb="UPDATE",version="v1"} 3
apiserver_watch_events_total{group="",resource="pods",version="v1"} 11
apiserver_watch_events_total{group="batch",resource="jobs",version="v1"} 5
apiserver_watch_events_sizes_sum{group="",resource="pods",version="v1"} 1000
apiserver_watch_events_sizes_sum{group="batch",resource="jobs",version="v1"} 24
`
	m, err := parseMetrics(strings.NewReader(scrape))
	if err != nil {
		t.Fatal(err)
	}
	before := parseAPILoad(m)
	want := apiLoad{
		requests:    map[string]float64{"PATCH statefulsets": 9, "UPDATE blockheightfallbacks/status": 3},
		watchEvents: map[string]float64{"pods": 11, "jobs.batch": 5},
		watchBytes:  1024,
	}
	if diff := cmp.Diff(want, before, cmp.AllowUnexported(apiLoad{})); diff != "" {
		t.Errorf("parsed (-want +got):\n%s", diff)
	}
	later := parseAPILoad(map[string]float64{
		`apiserver_request_total{resource="statefulsets",subresource="",verb="PATCH"}`: 12,
		`apiserver_watch_events_total{group="",resource="pods"}`:                       11,
	})
	d := later.since(before)
	if diff := cmp.Diff(apiLoad{requests: map[string]float64{"PATCH statefulsets": 3}, watchEvents: map[string]float64{}, watchBytes: -1024}, d, cmp.AllowUnexported(apiLoad{})); diff != "" {
		t.Errorf("since (-want +got):\n%s", diff)
	}
}

// TestParseQueueAdds: kube-controller-manager's work queue adds by queue.
func TestParseQueueAdds(t *testing.T) {
	got := parseQueueAdds(map[string]float64{
		`workqueue_adds_total{name="statefulset"}`:            4,
		`workqueue_adds_total{name="job"}`:                    2,
		`workqueue_depth{name="job"}`:                         9,
		`apiserver_request_total{resource="pods",verb="GET"}`: 1,
	})
	if diff := cmp.Diff(map[string]float64{"statefulset": 4, "job": 2}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
