//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// countingProxy sits on loopback between the operator and the apiserver and
// counts every request by verb and resource. It is the client-side count
// the issue asks for without touching the operator: the operator's
// kubeconfig points at the proxy (TLS, HTTP/2, as to an apiserver), and the
// proxy forwards with the admin's certificate, impersonating the operator's
// ServiceAccount, so RBAC is the chart's. An audit log would need an
// apiserver flag that test/localcluster does not expose; client-go's request
// metrics are not registered by the operator.
type countingProxy struct {
	srv      *http.Server
	url      string
	caPEM    []byte
	mu       sync.Mutex
	counts   map[reqKey]int
	statuses map[int]int
	// conflicts: 409 answers, by request.
	conflicts map[reqKey]int
}

type reqKey struct{ verb, resource string }

func newCountingProxy(upstream *rest.Config, impersonate rest.ImpersonationConfig) (*countingProxy, error) {
	up := rest.CopyConfig(upstream)
	up.Impersonate = impersonate
	rt, err := rest.TransportFor(up)
	if err != nil {
		return nil, err
	}
	target, err := url.Parse(up.Host)
	if err != nil {
		return nil, err
	}
	cert, caPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{url: "https://" + ln.Addr().String(), caPEM: caPEM, counts: map[reqKey]int{}, statuses: map[int]int{}, conflicts: map[reqKey]int{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		Transport:     rt,
		FlushInterval: -1, // watches stream
		ErrorLog:      nil,
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Counted when it arrives: a watch returns only when it ends.
			k := classify(r)
			p.mu.Lock()
			p.counts[k]++
			p.mu.Unlock()
			sw := &statusWriter{ResponseWriter: w}
			rp.ServeHTTP(sw, r)
			p.mu.Lock()
			p.statuses[sw.code()]++
			if sw.code() == http.StatusConflict {
				p.conflicts[k]++
			}
			p.mu.Unlock()
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	return p, nil
}

func (p *countingProxy) close() { _ = p.srv.Close() }

// kubeconfig writes a kubeconfig that reaches the apiserver through the
// proxy; the proxy supplies the credentials.
func (p *countingProxy) kubeconfig(path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["proxy"] = &clientcmdapi.Cluster{Server: p.url, CertificateAuthorityData: p.caPEM}
	kc.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "proxy"}
	kc.CurrentContext = "proxy"
	return clientcmd.WriteToFile(*kc, path)
}

// requestCounts is a snapshot of the counts; sub subtracts an earlier one.
type requestCounts struct {
	byKey     map[reqKey]int
	statuses  map[int]int
	conflicts map[reqKey]int
}

func (p *countingProxy) snapshot() requestCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := requestCounts{byKey: map[reqKey]int{}, statuses: map[int]int{}, conflicts: map[reqKey]int{}}
	for k, v := range p.counts {
		s.byKey[k] = v
	}
	for k, v := range p.conflicts {
		s.conflicts[k] = v
	}
	for k, v := range p.statuses {
		s.statuses[k] = v
	}
	return s
}

func (s requestCounts) sub(earlier requestCounts) requestCounts {
	d := requestCounts{byKey: map[reqKey]int{}, statuses: map[int]int{}, conflicts: map[reqKey]int{}}
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

// classify turns a request into the apiserver's verb and resource
// (resource/subresource), from its method and path.
func classify(r *http.Request) reqKey {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var rest []string
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		rest = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		rest = segs[3:]
	default:
		return reqKey{"other", r.URL.Path}
	}
	if len(rest) == 0 {
		return reqKey{"other", "discovery"}
	}
	var resource, name, sub string
	if rest[0] == "namespaces" && len(rest) >= 3 {
		resource = rest[2]
		if len(rest) >= 4 {
			name = rest[3]
		}
		if len(rest) >= 5 {
			sub = rest[4]
		}
	} else {
		resource = rest[0]
		if len(rest) >= 2 {
			name = rest[1]
		}
		if len(rest) >= 3 {
			sub = rest[2]
		}
	}
	if sub != "" {
		resource += "/" + sub
	}
	verb := "other"
	switch r.Method {
	case http.MethodGet:
		switch {
		case name != "":
			verb = "get"
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			verb = "watch"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if name == "" {
			verb = "deletecollection"
		}
	}
	return reqKey{verb, resource}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets the reverse proxy flush watch events through.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench-proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
