package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofEnv names the address of the optional profiling listener, for
// finding where CPU and memory go (docs/performance.md). It is off unless
// set, and meant for 127.0.0.1: the profiles show the process's internals.
const pprofEnv = "DEVO_COLLECTOR_PPROF"

// startPprof serves net/http/pprof on $DEVO_COLLECTOR_PPROF when it is set.
// It returns a stop function (a no-op when it is not set).
func startPprof(stderr io.Writer) func() {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return func() {}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "devo-aws-collector: %s=%s: %v (profiling off)\n", pprofEnv, addr, err)
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(stderr, "devo-aws-collector: profiling on http://%s/debug/pprof/\n", ln.Addr())
	return func() { _ = srv.Close() }
}
