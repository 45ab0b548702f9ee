package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestClassifyRequest(t *testing.T) {
	tests := map[string]struct {
		method, url    string
		verb, resource string
	}{
		"get namespaced":      {"GET", "/apis/apps/v1/namespaces/cita/statefulsets/node0", "get", "statefulsets"},
		"list namespaced":     {"GET", "/api/v1/namespaces/cita/pods?labelSelector=a%3Db", "list", "pods"},
		"list all namespaces": {"GET", "/apis/batch/v1/jobs?limit=500", "list", "jobs"},
		"watch":               {"GET", "/apis/citacloud.rivtower.com/v1/backups?watch=true&resourceVersion=5", "watch", "backups"},
		"watch namespaced":    {"GET", "/api/v1/namespaces/cita/pods?watch=1", "watch", "pods"},
		"status update":       {"PUT", "/apis/citacloud.rivtower.com/v1/namespaces/cita/blockheightfallbacks/f1/status", "update", "blockheightfallbacks/status"},
		"patch":               {"PATCH", "/apis/citacloud.rivtower.com/v1/namespaces/cita/restores/r1", "patch", "restores"},
		"create":              {"POST", "/api/v1/namespaces/cita/events", "create", "events"},
		"delete":              {"DELETE", "/api/v1/namespaces/cita/pods/p1", "delete", "pods"},
		"deletecollection":    {"DELETE", "/api/v1/namespaces/cita/pods", "deletecollection", "pods"},
		"cluster-scoped get":  {"GET", "/api/v1/nodes/kwok-node-0", "get", "nodes"},
		"namespace get":       {"GET", "/api/v1/namespaces/cita", "get", "namespaces"},
		"namespace list":      {"GET", "/api/v1/namespaces", "list", "namespaces"},
		"discovery group":     {"GET", "/apis/apps/v1", "get", "discovery"},
		"discovery root":      {"GET", "/apis", "get", "discovery"},
		"not the API":         {"GET", "/version", "other", "other"},
		"openapi of a group":  {"GET", "/openapi/v3/apis/apps/v1", "get", "discovery"},
		"healthz":             {"GET", "/healthz", "other", "other"},
		"path prefix":         {"PUT", "/k8s/clusters/c-x7/apis/citacloud.rivtower.com/v1/namespaces/cita/backups/b1/status", "update", "backups/status"},
		"path prefix, core":   {"GET", "/k8s/clusters/c-x7/api/v1/namespaces/cita/pods?watch=true", "watch", "pods"},
		"namespace status":    {"PUT", "/api/v1/namespaces/cita/status", "update", "namespaces/status"},
		"namespace finalize":  {"PUT", "/api/v1/namespaces/cita/finalize", "update", "namespaces/finalize"},
		"discovery core":      {"GET", "/api/v1", "get", "discovery"},
		"discovery bare api":  {"GET", "/api", "get", "discovery"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			verb, resource := classifyRequest(tc.method, u)
			if verb != tc.verb || resource != tc.resource {
				t.Errorf("classifyRequest(%s %s) = %s %s, want %s %s", tc.method, tc.url, verb, resource, tc.verb, tc.resource)
			}
		})
	}
}

// TestRequestMetricsCountClientRequests: a clientset built on a config with
// the wrapper counts each request it sends, with the code it got back.
func TestRequestMetricsCountClientRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPatch {
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Conflict","code":409}`))
			return
		}
		_, _ = w.Write([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p1","namespace":"cita"}}`))
	}))
	defer srv.Close()

	reg := prometheus.NewRegistry()
	m := newRequestMetrics(reg)
	cfg := &rest.Config{Host: srv.URL}
	cfg.Wrap(m.wrap)
	kube := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	for range 2 {
		if _, err := kube.CoreV1().Pods("cita").Get(ctx, "p1", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube.CoreV1().Pods("cita").Patch(ctx, "p1", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{}); err == nil {
		t.Fatal("patch: want the server's conflict")
	}
	got := map[string]float64{}
	for _, l := range []struct{ verb, resource, code string }{{"get", "pods", "200"}, {"patch", "pods", "409"}, {"get", "pods", "409"}} {
		got[strings.Join([]string{l.verb, l.resource, l.code}, " ")] = testutil.ToFloat64(m.requests.WithLabelValues(l.verb, l.resource, l.code))
	}
	want := map[string]float64{"get pods 200": 2, "patch pods 409": 1, "get pods 409": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counted requests (-want +got):\n%s", diff)
	}
}
