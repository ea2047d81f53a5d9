// Command xdsbench is Meshplane's xDS scale benchmark. It builds and starts
// the real control plane (a fresh embedded etcd per run, explicit loopback
// ports), registers Services × Instances through the gRPC Registry API, starts
// the load generator (bench/xds/cmd/xdsload) as a second process with N
// scoped clients plus the wildcard clients, changes one endpoint of the
// service every client watches -rounds times, and prints a Markdown table:
// change → every client ACKed (p50, p99, max), server memory per connected
// client, server CPU per change and registrations per second.
//
//	go run ./bench/xds/cmd/xdsbench -clients 100,1000,10000
//
// Run it from the module root (or pass -module). See docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/meshplane/meshplane/bench/xds/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := harness.Defaults()
	fs := flag.NewFlagSet("xdsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.String("clients", "100,1000,10000", "scoped client counts, comma-separated: one run (fresh control plane) each")
	fs.IntVar(&cfg.Wildcard, "wildcard", cfg.Wildcard, "wildcard (Envoy-like) clients added to every run")
	fs.IntVar(&cfg.Services, "services", cfg.Services, "services registered")
	fs.IntVar(&cfg.Instances, "instances", cfg.Instances, "instances per service")
	fs.IntVar(&cfg.PerClient, "per-client", cfg.PerClient, "services each scoped client subscribes to (the changing one included)")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "changes measured per run")
	fs.DurationVar(&cfg.HoldOff, "hold-off", cfg.HoldOff, "control plane --xds-hold-off; subtracted in the 'after hold-off' figure")
	fs.DurationVar(&cfg.MaxDelay, "max-delay", cfg.MaxDelay, "control plane --xds-max-delay")
	fs.IntVar(&cfg.RegConcurrency, "reg-concurrency", cfg.RegConcurrency, "concurrent Register calls while seeding")
	fs.IntVar(&cfg.RegConns, "reg-conns", cfg.RegConns, "gRPC connections the Register calls share")
	fs.Int64Var(&cfg.TTL, "ttl", cfg.TTL, "instance lease TTL in seconds (5..300)")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "idle time before each memory reading")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", cfg.ConnectTimeout, "bound on the clients' connect phase")
	fs.DurationVar(&cfg.RoundTimeout, "round-timeout", cfg.RoundTimeout, "bound on one change's wait for every ACK")
	fs.IntVar(&cfg.DialConcurrency, "dial-concurrency", cfg.DialConcurrency, "clients connecting at once")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "pre-built control plane binary (default: go build ./cmd/controlplane)")
	fs.StringVar(&cfg.LoadBin, "load-bin", "", "pre-built xdsload binary (default: go build ./bench/xds/cmd/xdsload)")
	fs.StringVar(&cfg.ModuleDir, "module", cfg.ModuleDir, "module root to build from")
	fs.BoolVar(&cfg.Profile, "profile", false, "run the server through bench/xds/cmd/xdsserve: forced GC before memory readings, CPU and heap profiles")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", cfg.ProfileDir, "where -profile writes cpu-N.pprof and heap-N-*.pb.gz")
	fs.StringVar(&cfg.WorkDir, "work", "", "keep data, plans and logs here (default: a temporary directory, removed)")
	jsonOut := fs.String("json", "", "also write the full results (every round) as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xdsbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	counts, err := parseCounts(*clients)
	if err != nil {
		fmt.Fprintln(stderr, "xdsbench:", err)
		return 2
	}
	cfg.Clients = counts
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "xdsbench:", err)
		return 2
	}
	results, runErr := harness.Run(ctx, cfg, stdout, stderr)
	if *jsonOut != "" {
		data, err := json.MarshalIndent(results, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, data, 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "xdsbench: write JSON:", err)
			return 1
		}
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "xdsbench:", runErr)
		return 1
	}
	return 0
}

// parseCounts parses "100,1000,10000".
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-clients %q: want comma-separated counts ≥ 0", s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-clients %q: want at least one count", s)
	}
	return out, nil
}
