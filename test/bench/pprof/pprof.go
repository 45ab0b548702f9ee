//go:build benchpprof

// This file is not built on its own: `go run ./test/bench -pprof` lays it
// over cmd/cita-node-operator (go build -overlay -tags benchpprof) to get an
// operator that serves net/http/pprof on $CITA_BENCH_PPROF, until the
// operator has a --pprof-bind-address flag of its own.
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("CITA_BENCH_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
