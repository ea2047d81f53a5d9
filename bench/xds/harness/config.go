package harness

import (
	"errors"
	"fmt"
	"time"
)

// Config is one benchmark invocation. Zero values mean the defaults noted.
type Config struct {
	// Clients is the scoped client counts, one run (and one fresh control
	// plane) each; Wildcard is the wildcard clients added to every run.
	Clients  []int
	Wildcard int
	// Services × Instances is the registry (1,000 × 10); PerClient is how
	// many services a scoped client subscribes to (10, the changing one
	// included).
	Services  int
	Instances int
	PerClient int
	// Rounds is how many changes each run measures.
	Rounds int
	// HoldOff and MaxDelay are passed to the control plane (--xds-hold-off,
	// --xds-max-delay); the "after hold-off" figures subtract HoldOff.
	HoldOff  time.Duration
	MaxDelay time.Duration
	// RegConcurrency concurrent Register calls over RegConns connections.
	RegConcurrency int
	RegConns       int
	// TTL is every instance's lease TTL in seconds (5..300); leases are
	// refreshed between rounds once a third of it has passed.
	TTL int64
	// Settle is how long the server sits idle before each memory reading.
	Settle time.Duration
	// ConnectTimeout bounds the load generator's connect phase;
	// RoundTimeout bounds one change's wait for every ACK.
	ConnectTimeout time.Duration
	RoundTimeout   time.Duration
	// DialConcurrency bounds the clients connecting at once.
	DialConcurrency int
	// ServerBin and LoadBin are pre-built binaries; empty builds
	// ./cmd/controlplane (or, with Profile, ./bench/xds/cmd/xdsserve) and
	// ./bench/xds/cmd/xdsload from the module at ModuleDir.
	ServerBin string
	LoadBin   string
	ModuleDir string
	// Profile runs the control plane through bench/xds/cmd/xdsserve (the
	// same app.Serve plus a pprof listener): memory is read after a forced
	// GC, and a CPU profile of the change rounds plus a heap profile of the
	// connected state are written to ProfileDir (plus a CPU profile of the
	// registrations).
	Profile    bool
	ProfileDir string
	// WorkDir holds data dirs, plans and logs; empty means a temporary
	// directory removed afterwards.
	WorkDir string
}

// Defaults is the benchmark the issue asks for.
func Defaults() Config {
	return Config{
		Clients:         []int{100, 1000, 10000},
		Wildcard:        100,
		Services:        1000,
		Instances:       10,
		PerClient:       10,
		Rounds:          10,
		HoldOff:         100 * time.Millisecond,
		MaxDelay:        time.Second,
		RegConcurrency:  256,
		RegConns:        4,
		TTL:             300,
		Settle:          5 * time.Second,
		ConnectTimeout:  10 * time.Minute,
		RoundTimeout:    60 * time.Second,
		DialConcurrency: 256,
		ModuleDir:       ".",
		ProfileDir:      "xdsbench-profiles",
	}
}

// Validate names the first flag that is out of range.
func (c Config) Validate() error {
	if len(c.Clients) == 0 {
		return errors.New("harness: -clients: want at least one count")
	}
	for _, n := range c.Clients {
		if n < 0 {
			return fmt.Errorf("harness: -clients %d: want ≥ 0", n)
		}
		if n+c.Wildcard == 0 {
			return errors.New("harness: -clients and -wildcard: a run needs at least one client")
		}
	}
	switch {
	case c.Wildcard < 0:
		return fmt.Errorf("harness: -wildcard %d: want ≥ 0", c.Wildcard)
	case c.Services < 1 || c.Services > 65535:
		return fmt.Errorf("harness: -services %d: want 1..65535", c.Services)
	case c.Instances < 1 || c.Instances > 250:
		return fmt.Errorf("harness: -instances %d: want 1..250", c.Instances)
	case c.PerClient < 1 || c.PerClient > c.Services:
		return fmt.Errorf("harness: -per-client %d: want 1..%d (the services)", c.PerClient, c.Services)
	case c.Rounds < 1 || c.Rounds > 1000:
		return fmt.Errorf("harness: -rounds %d: want 1..1000", c.Rounds)
	case c.HoldOff < 0 || c.MaxDelay < c.HoldOff:
		return fmt.Errorf("harness: -hold-off %s, -max-delay %s: want 0 ≤ hold-off ≤ max-delay", c.HoldOff, c.MaxDelay)
	case c.RegConcurrency < 1 || c.RegConns < 1:
		return fmt.Errorf("harness: -reg-concurrency %d, -reg-conns %d: want ≥ 1", c.RegConcurrency, c.RegConns)
	case c.TTL < 5 || c.TTL > 300:
		return fmt.Errorf("harness: -ttl %d: want 5..300 seconds", c.TTL)
	case c.Settle < 0 || c.ConnectTimeout <= 0 || c.RoundTimeout <= 0:
		return errors.New("harness: -settle ≥ 0, -connect-timeout and -round-timeout > 0")
	case c.DialConcurrency < 1:
		return fmt.Errorf("harness: -dial-concurrency %d: want ≥ 1", c.DialConcurrency)
	}
	return nil
}
