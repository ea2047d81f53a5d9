// Command xdsload is the xDS benchmark's load generator: many simulated ADS
// clients, each on its own gRPC connection, run in a process of their own so
// that the server is measured alone. It reads a JSON plan (see
// bench/xds/loadgen.Plan), writes JSON-line events to standard output and
// takes commands ("report <marker>", "quit") on standard input; it exits when
// standard input closes. bench/xds/cmd/xdsbench starts it; run it by hand as
//
//	go run ./bench/xds/cmd/xdsload -plan plan.json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshplane/meshplane/bench/xds/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xdsload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	planPath := fs.String("plan", "", "JSON plan file (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *planPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: xdsload -plan plan.json")
		return 2
	}
	data, err := os.ReadFile(*planPath)
	if err != nil {
		fmt.Fprintln(stderr, "xdsload:", err)
		return 1
	}
	plan, err := loadgen.ParsePlan(data)
	if err != nil {
		fmt.Fprintln(stderr, "xdsload:", err)
		return 2
	}
	g, err := loadgen.New(plan, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "xdsload:", err)
		return 2
	}
	if err := g.Run(ctx, stdin); err != nil {
		fmt.Fprintln(stderr, "xdsload:", err)
		return 1
	}
	return 0
}
