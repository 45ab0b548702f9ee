//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// apiLoad is what the kube-apiserver served, all clients together (the
// operator, the bench, kube-controller-manager, the scheduler, kwok, the job
// runner), from its own metrics: requests by verb and resource, and watch
// events sent by resource. Read at the timed windows' edges, it shows where
// the operator's run costs the apiserver more than the floor's.
//
// queueAdds is the other side: items added to kube-controller-manager's
// work queues, by controller (from its metrics), how often each controller
// was asked to look at something.
type apiLoad struct {
	requests    map[string]float64 // "VERB resource[/subresource]"
	watchEvents map[string]float64 // "resource[.group]"
	watchBytes  float64
	queueAdds   map[string]float64 // work queue name
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
	l := parseAPILoad(m)
	if km, err := e.controllerManagerMetrics(); err != nil {
		logf("kube-controller-manager metrics: %v", err)
	} else {
		l.queueAdds = parseQueueAdds(km)
	}
	return l
}

// controllerManagerMetrics scrapes kube-controller-manager's /metrics as
// the admin (its serving certificate is self-signed).
func (e *env) controllerManagerMetrics() (map[string]float64, error) {
	cfg := rest.CopyConfig(e.restCfg)
	cfg.Host = e.cluster.ControllerManager
	cfg.TLSClientConfig.Insecure, cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = true, nil, ""
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	hc.Timeout = 10 * time.Second
	resp, err := hc.Get(cfg.Host + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseQueueAdds: workqueue_adds_total by queue name.
func parseQueueAdds(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for series, v := range m {
		if labels, ok := strings.CutPrefix(series, "workqueue_adds_total{"); ok {
			out[parseLabels(strings.TrimSuffix(labels, "}"))["name"]] += v
		}
	}
	return out
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
	if l.queueAdds != nil {
		d.queueAdds = map[string]float64{}
		for k, v := range l.queueAdds {
			if v -= earlier.queueAdds[k]; v > 0 {
				d.queueAdds[k] = v
			}
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
