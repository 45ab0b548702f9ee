//go:build linux

package main

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// reqKey is a request as the apiserver's authorizer names it.
type reqKey struct{ verb, resource string }

// requestCounts is a snapshot of the counts; sub subtracts an earlier one.
type requestCounts struct {
	byKey     map[reqKey]int
	statuses  map[int]int
	conflicts map[reqKey]int
}

func newRequestCounts() requestCounts {
	return requestCounts{byKey: map[reqKey]int{}, statuses: map[int]int{}, conflicts: map[reqKey]int{}}
}

// requestMetric is the operator's count of its own requests to the
// apiserver (cmd/cita-node-operator/requestmetrics.go).
const requestMetric = "cita_node_operator_api_requests_total"

// parseRequestCounts reads the request metric out of a /metrics scrape
// (name{labels} → value, see operator.metrics).
func parseRequestCounts(m map[string]float64) requestCounts {
	s := newRequestCounts()
	for series, v := range m {
		labels, ok := strings.CutPrefix(series, requestMetric+"{")
		if !ok {
			continue
		}
		l := parseLabels(strings.TrimSuffix(labels, "}"))
		k, n := reqKey{l["verb"], l["resource"]}, int(v)
		s.byKey[k] += n
		code, err := strconv.Atoi(l["code"])
		if err != nil {
			code = 0 // no response
		}
		s.statuses[code] += n
		if code == http.StatusConflict {
			s.conflicts[k] += n
		}
	}
	return s
}

// parseLabels splits a="x",b="y" (values without commas or quotes, as
// verbs, resources and codes are).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

// add sums two snapshots (of two operator processes).
func (s requestCounts) add(o requestCounts) requestCounts {
	d := newRequestCounts()
	for _, c := range []requestCounts{s, o} {
		for k, v := range c.byKey {
			d.byKey[k] += v
		}
		for k, v := range c.conflicts {
			d.conflicts[k] += v
		}
		for k, v := range c.statuses {
			d.statuses[k] += v
		}
	}
	return d
}

func (s requestCounts) sub(earlier requestCounts) requestCounts {
	d := newRequestCounts()
	for k, v := range s.byKey {
		if v -= earlier.byKey[k]; v != 0 {
			d.byKey[k] = v
		}
	}
	for k, v := range s.conflicts {
		if v -= earlier.conflicts[k]; v != 0 {
			d.conflicts[k] = v
		}
	}
	for k, v := range s.statuses {
		if v -= earlier.statuses[k]; v != 0 {
			d.statuses[k] = v
		}
	}
	return d
}

func isWrite(verb string) bool {
	switch verb {
	case "get", "list", "watch", "other":
		return false
	}
	return true
}

func isEvent(resource string) bool {
	return resource == "events" || strings.HasPrefix(resource, "events/")
}

// total counts requests; writes: non-read verbs, events excluded.
func (s requestCounts) total() (all, writes, events int) {
	for k, v := range s.byKey {
		all += v
		switch {
		case isEvent(k.resource) && isWrite(k.verb):
			events += v
		case isWrite(k.verb):
			writes += v
		}
	}
	return
}

func (s requestCounts) sorted() []reqKey {
	keys := make([]reqKey, 0, len(s.byKey))
	for k := range s.byKey {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if s.byKey[keys[i]] != s.byKey[keys[j]] {
			return s.byKey[keys[i]] > s.byKey[keys[j]]
		}
		return keys[i].verb+keys[i].resource < keys[j].verb+keys[j].resource
	})
	return keys
}
