// Command controlplane is Meshplane's control plane: the service registry,
// the xDS server, the OTLP trace intake and the REST API in one binary.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshplane/meshplane/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: controlplane [serve] [flags]

Subcommands:
  serve     run the control plane (the default)
  version   print the version

Run "controlplane serve -h" for the flags.
`

// run is main without the process: tests call it in-process. It returns the
// exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := app.LoadConfig(args, getenv, stderr)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if err := app.Serve(ctx, cfg, stderr, nil); err != nil {
			fmt.Fprintln(stderr, "controlplane:", err)
			return 1
		}
		return 0
	case "version":
		fmt.Fprintln(stdout, app.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "controlplane: unknown command %q\n%s", cmd, usage)
		return 2
	}
}
