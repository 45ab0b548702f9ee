//go:build linux

package main

import (
	"bytes"
	"context"
	"sort"
	"strings"
)

// apiLoad is what the kube-apiserver served, all clients together (the
// operator, the bench, kube-controller-manager, the scheduler, kwok, the job
// runner), from its own metrics: requests by verb and resource, and watch
// events sent by resource. Read at the timed windows' edges, it shows where
// the operator's run costs the apiserver more than the floor's.
type apiLoad struct {
	requests    map[string]float64 // "VERB resource[/subresource]"
	watchEvents map[string]float64 // "resource[.group]"
	watchBytes  float64
}

// apiLoadNow scrapes the apiserver's /metrics; an error leaves the load
// empty (the report then says nothing about it).
func (e *env) apiLoadNow(ctx context.Context) apiLoad {
	b, err := e.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		logf("apiserver metrics: %v", err)
		return parseAPILoad(nil)
	}
	m, err := parseMetrics(bytes.NewReader(b))
	if err != nil {
		logf("apiserver metrics: %v", err)
	}
	return parseAPILoad(m)
}

// parseAPILoad picks the apiserver's request and watch counters out of a
// scrape (name{labels} → value).
func parseAPILoad(m map[string]float64) apiLoad {
	l := apiLoad{requests: map[string]float64{}, watchEvents: map[string]float64{}}
	for series, v := range m {
		name, labels, _ := strings.Cut(series, "{")
		lb := parseLabels(strings.TrimSuffix(labels, "}"))
		switch name {
		case "apiserver_request_total":
			k := lb["verb"] + " " + lb["resource"]
			if lb["subresource"] != "" {
				k += "/" + lb["subresource"]
			}
			l.requests[k] += v
		case "apiserver_watch_events_total":
			k := lb["resource"]
			if lb["group"] != "" {
				k += "." + lb["group"]
			}
			l.watchEvents[k] += v
		case "apiserver_watch_events_sizes_sum":
			l.watchBytes += v
		}
	}
	return l
}

func (l apiLoad) since(earlier apiLoad) apiLoad {
	d := apiLoad{requests: map[string]float64{}, watchEvents: map[string]float64{}, watchBytes: l.watchBytes - earlier.watchBytes}
	for k, v := range l.requests {
		if v -= earlier.requests[k]; v > 0 {
			d.requests[k] = v
		}
	}
	for k, v := range l.watchEvents {
		if v -= earlier.watchEvents[k]; v > 0 {
			d.watchEvents[k] = v
		}
	}
	return d
}

// apiLoadRows lists the keys of any of the maps, largest last column first.
func apiLoadRows(maps ...map[string]float64) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	last := maps[len(maps)-1]
	sort.Slice(keys, func(i, j int) bool {
		if last[keys[i]] != last[keys[j]] {
			return last[keys[i]] > last[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
