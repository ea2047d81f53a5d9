// Command xdsserve is the control plane (the same app.Serve that
// cmd/controlplane runs, with the same flags) plus a profiling listener, for
// the xDS benchmark's -profile mode. The listener serves net/http/pprof under
// /debug/pprof/ (heap?gc=1 forces a GC first) and two endpoints that bracket
// a CPU profile: POST /bench/cpu/start?file=PATH and POST /bench/cpu/stop.
//
//	xdsserve --pprof-addr 127.0.0.1:6060 [controlplane serve flags]
//
// --pprof-addr must come first. The listener has no authentication: bind it
// to loopback only.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	rpprof "runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/meshplane/meshplane/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	pprofAddr := ""
	if len(args) >= 2 && (args[0] == "--pprof-addr" || args[0] == "-pprof-addr") {
		pprofAddr, args = args[1], args[2:]
	}
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	cfg, err := app.LoadConfig(args, getenv, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if pprofAddr != "" {
		lis, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			fmt.Fprintln(stderr, "xdsserve: pprof listener:", err)
			return 1
		}
		srv := &http.Server{Handler: newProfiler().mux(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintln(stderr, "xdsserve: pprof listener:", err)
			}
		}()
		defer srv.Close()
	}
	if err := app.Serve(ctx, cfg, stderr, nil); err != nil {
		fmt.Fprintln(stderr, "xdsserve:", err)
		return 1
	}
	return 0
}

// profiler brackets one CPU profile at a time.
type profiler struct {
	mu  sync.Mutex
	out *os.File
}

func newProfiler() *profiler { return &profiler{} }

func (p *profiler) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("POST /bench/cpu/start", p.start)
	mux.HandleFunc("POST /bench/cpu/stop", p.stop)
	mux.HandleFunc("POST /bench/gc", func(w http.ResponseWriter, _ *http.Request) { runtime.GC() })
	return mux
}

func (p *profiler) start(w http.ResponseWriter, r *http.Request) {
	file := r.URL.Query().Get("file")
	if file == "" {
		http.Error(w, "file: required", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out != nil {
		http.Error(w, "a CPU profile is already running", http.StatusConflict)
		return
	}
	f, err := os.Create(file)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := rpprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	p.out = f
}

func (p *profiler) stop(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		http.Error(w, "no CPU profile is running", http.StatusConflict)
		return
	}
	rpprof.StopCPUProfile()
	err := p.out.Close()
	p.out = nil
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
