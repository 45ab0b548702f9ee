package main

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// requestMetrics counts the operator's own requests to the apiserver by the
// apiserver's verb, resource (with subresource) and response code: what the
// operator costs the control plane, seen from the client. client-go's own
// request metrics know the method and host, not the resource.
type requestMetrics struct {
	requests *prometheus.CounterVec
}

func newRequestMetrics(r prometheus.Registerer) *requestMetrics {
	m := &requestMetrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cita_node_operator_api_requests_total",
		Help: "Requests the operator sent to the apiserver, by verb, resource[/subresource] and response code (\"error\": no response). A watch is counted when it starts.",
	}, []string{"verb", "resource", "code"})}
	r.MustRegister(m.requests)
	return m
}

// wrap is a rest.Config WrapTransport: it counts each request once its
// response headers (or an error) came back.
func (m *requestMetrics) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		verb, resource := classifyRequest(req.Method, req.URL)
		resp, err := rt.RoundTrip(req)
		code := "error"
		if err == nil {
			code = strconv.Itoa(resp.StatusCode)
		}
		m.requests.WithLabelValues(verb, resource, code).Inc()
		return resp, err
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// classifyRequest names a request as the apiserver's authorizer would: verb
// (get, list, watch, create, update, patch, delete, deletecollection) and
// resource[/subresource]. The path is read from its first "api" or "apis"
// segment, so a server URL with a path prefix (a proxy such as Rancher's
// /k8s/clusters/<id>) classifies the same. Group and version discovery are
// "discovery"; anything else is "other", never the path itself, so the
// metric's labels stay few.
func classifyRequest(method string, u *url.URL) (verb, resource string) {
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	var rest []string
	for i, s := range segs {
		if s != "api" && s != "apis" {
			continue
		}
		switch {
		case s == "api" && len(segs) > i+1:
			rest = segs[i+2:] // api/<version>/...
		case s == "apis" && len(segs) > i+2:
			rest = segs[i+3:] // apis/<group>/<version>/...
		default:
			return "get", "discovery"
		}
		break
	}
	switch {
	case rest == nil:
		return "other", "other"
	case len(rest) == 0:
		return "get", "discovery"
	}
	if rest[0] == "namespaces" && len(rest) >= 3 && !(len(rest) == 3 && namespaceSubresources[rest[2]]) {
		rest = rest[2:] // namespaces/<ns>/<resource>/...
	}
	resource = rest[0]
	name := ""
	if len(rest) >= 2 {
		name = rest[1]
	}
	if len(rest) >= 3 {
		resource += "/" + rest[2]
	}
	switch method {
	case http.MethodGet:
		switch {
		case name != "":
			return "get", resource
		case u.Query().Get("watch") == "true" || u.Query().Get("watch") == "1":
			return "watch", resource
		default:
			return "list", resource
		}
	case http.MethodPost:
		return "create", resource
	case http.MethodPut:
		return "update", resource
	case http.MethodPatch:
		return "patch", resource
	case http.MethodDelete:
		if name == "" {
			return "deletecollection", resource
		}
		return "delete", resource
	}
	return "other", resource
}

// namespaceSubresources are those of a Namespace object itself
// (namespaces/<name>/status), not resources in it.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}
