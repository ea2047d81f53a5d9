package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/meshplane/meshplane/bench/xds/loadgen"
)

// maxRecordedErrors bounds Result.Errors.
const maxRecordedErrors = 10

// Run builds what it needs, runs one benchmark per client count (each on a
// fresh control plane), writes progress to progress and the Markdown table
// to out, and returns the results, also those of runs that failed part-way.
func Run(ctx context.Context, cfg Config, out, progress io.Writer) ([]*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	work := cfg.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "xdsbench-")
		if err != nil {
			return nil, fmt.Errorf("harness: work dir: %w", err)
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	serverBin, loadBin := cfg.ServerBin, cfg.LoadBin
	if serverBin == "" {
		serverBin = filepath.Join(work, "controlplane")
		pkg := "./cmd/controlplane"
		if cfg.Profile {
			pkg = "./bench/xds/cmd/xdsserve"
		}
		fmt.Fprintf(progress, "building %s\n", pkg)
		if err := buildBinary(ctx, cfg.ModuleDir, pkg, serverBin, progress); err != nil {
			return nil, err
		}
	}
	if loadBin == "" {
		loadBin = filepath.Join(work, "xdsload")
		fmt.Fprintln(progress, "building ./bench/xds/cmd/xdsload")
		if err := buildBinary(ctx, cfg.ModuleDir, "./bench/xds/cmd/xdsload", loadBin, progress); err != nil {
			return nil, err
		}
	}
	if cfg.Profile {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("harness: profile dir: %w", err)
		}
	}
	var results []*Result
	var errs []error
	for _, n := range cfg.Clients {
		dir := filepath.Join(work, "run-"+strconv.Itoa(n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return results, fmt.Errorf("harness: run dir: %w", err)
		}
		fmt.Fprintf(progress, "== %d scoped + %d wildcard clients (logs in %s)\n", n, cfg.Wildcard, dir)
		r, err := runOne(ctx, cfg, n, serverBin, loadBin, dir, progress)
		results = append(results, r)
		if err != nil {
			r.Errors = append(r.Errors, err.Error())
			errs = append(errs, fmt.Errorf("%d clients: %w", n, err))
			fmt.Fprintf(progress, "run failed: %v\n", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	WriteTable(out, results)
	return results, errors.Join(errs...)
}

// runOne is one client count on a fresh control plane.
func runOne(ctx context.Context, cfg Config, n int, serverBin, loadBin, dir string, progress io.Writer) (*Result, error) {
	r := &Result{Scoped: n, Wildcard: cfg.Wildcard, HoldOff: cfg.HoldOff, GCForced: cfg.Profile}
	srv, err := startServer(ctx, cfg, serverBin, dir)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	httpc := &http.Client{Timeout: 30 * time.Second}
	metrics := func() (Metrics, error) { return scrape(ctx, httpc, srv.metricsURL()) }
	readMem := func(name string) (MemSample, error) {
		if cfg.Profile {
			// Two GCs (this one and heap?gc=1's) so that sync.Pool victims —
			// gRPC's pooled send buffers — are gone too.
			if err := srv.post(ctx, "/bench/gc"); err != nil {
				return MemSample{}, err
			}
			file := filepath.Join(cfg.ProfileDir, fmt.Sprintf("heap-%d-%s.pb.gz", n, name))
			if err := srv.save(ctx, "/debug/pprof/heap?gc=1", file); err != nil {
				return MemSample{}, err
			}
			file = filepath.Join(cfg.ProfileDir, fmt.Sprintf("goroutine-%d-%s.txt", n, name))
			if err := srv.save(ctx, "/debug/pprof/goroutine?debug=1", file); err != nil {
				return MemSample{}, err
			}
		}
		m, err := metrics()
		if err != nil {
			return MemSample{}, err
		}
		return memSample(m), nil
	}

	reg, err := dialRegistry(srv.grpcAddr, cfg.RegConns)
	if err != nil {
		return r, err
	}
	defer reg.close()
	total := cfg.Services * cfg.Instances
	fmt.Fprintf(progress, "registering %d services × %d instances (%d concurrent calls)\n", cfg.Services, cfg.Instances, cfg.RegConcurrency)
	if cfg.Profile {
		file, _ := filepath.Abs(filepath.Join(cfg.ProfileDir, fmt.Sprintf("cpu-%d-register.pprof", n)))
		if err := srv.post(ctx, "/bench/cpu/start?file="+file); err != nil {
			return r, err
		}
	}
	d, failed, err := reg.seed(ctx, cfg)
	if cfg.Profile {
		if err := srv.post(ctx, "/bench/cpu/stop"); err != nil {
			return r, err
		}
	}
	r.Registrations, r.RegistrationTime, r.RegistrationErrors = total-failed, d, failed
	if err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("%d registrations failed, first: %v", failed, err))
	}
	fmt.Fprintf(progress, "registered %d in %s: %.0f/s, %d errors\n", total-failed, d.Round(time.Millisecond), float64(total-failed)/d.Seconds(), failed)
	if failed == total {
		return r, fmt.Errorf("every registration failed: %w", err)
	}
	lastRefresh := time.Now()
	if err := waitPublished(ctx, metrics, cfg.Services, time.Minute); err != nil {
		return r, err
	}
	time.Sleep(cfg.Settle)
	if r.Before, err = readMem("before"); err != nil {
		return r, err
	}

	plan := loadgen.Plan{
		Addr:            srv.grpcAddr,
		Clusters:        clusterNames(cfg.Services),
		Shared:          markerService,
		PerClient:       cfg.PerClient,
		Scoped:          n,
		Wildcard:        cfg.Wildcard,
		MarkerAddress:   instanceAddr(markerService, markerInstance),
		MarkerPort:      benchPort,
		DialConcurrency: cfg.DialConcurrency,
	}
	lp, err := startLoad(loadBin, dir, plan)
	if err != nil {
		return r, err
	}
	defer lp.stop()
	record := func(ev loadgen.Event) {
		if ev.Event == "error" && len(r.Errors) < maxRecordedErrors {
			r.Errors = append(r.Errors, fmt.Sprintf("client %s: %s", ev.Client, ev.Error))
		}
	}
	ready, err := waitEvent(ctx, srv, lp, cfg.ConnectTimeout, progress, record, func(ev loadgen.Event) bool { return ev.Event == "ready" })
	if err != nil {
		return r, fmt.Errorf("connect phase: %w", err)
	}
	r.Ready, r.Failed, r.OpenFilesLimit = ready.Ready, ready.Failed, ready.OpenFilesLimit
	r.ConnectTime = time.Duration(ready.ElapsedSeconds * float64(time.Second))
	fmt.Fprintf(progress, "%d clients ready, %d failed, in %s\n", ready.Ready, ready.Failed, r.ConnectTime.Round(time.Millisecond))
	if r.Ready == 0 {
		return r, errors.New("no client got its configuration")
	}
	time.Sleep(cfg.Settle)
	if r.After, err = readMem("connected"); err != nil {
		return r, err
	}

	if cfg.Profile {
		file, _ := filepath.Abs(filepath.Join(cfg.ProfileDir, fmt.Sprintf("cpu-%d.pprof", n)))
		if err := srv.post(ctx, "/bench/cpu/start?file="+file); err != nil {
			return r, err
		}
		defer func() { _ = srv.post(context.Background(), "/bench/cpu/stop") }()
	}
	lastCPU := ready.CPUSeconds
	for k := 1; k <= cfg.Rounds; k++ {
		if time.Since(lastRefresh) > time.Duration(cfg.TTL)*time.Second/3 {
			d, failed, err := reg.heartbeat(ctx, cfg)
			fmt.Fprintf(progress, "refreshed leases in %s (%d failed)\n", d.Round(time.Millisecond), failed)
			if err != nil && len(r.Errors) < maxRecordedErrors {
				r.Errors = append(r.Errors, fmt.Sprintf("heartbeat: %d failed, first: %v", failed, err))
			}
			lastRefresh = time.Now()
			time.Sleep(time.Second)
		}
		rd, cpu, err := runRound(ctx, cfg, srv, reg, lp, metrics, uint32(k+1), progress, record)
		if err != nil {
			return r, fmt.Errorf("round %d: %w", k, err)
		}
		rd.LoadCPU = time.Duration((cpu - lastCPU) * float64(time.Second))
		lastCPU = cpu
		r.Rounds = append(r.Rounds, rd)
		all := Summarise(append(append([]time.Duration(nil), rd.Scoped...), rd.Wildcard...))
		fmt.Fprintf(progress, "round %d: %d ACKs (%d missing), p50 %s, p99 %s, max %s; server CPU %s, %.0f EDS pushes, %.0f publishes taking %s\n",
			k, all.Count, rd.Missing, ms(all.P50), ms(all.P99), ms(all.Max), ms(rd.ServerCPU), rd.EDSPushes, rd.Publishes, ms(rd.Publish))
		time.Sleep(max(300*time.Millisecond, cfg.HoldOff))
	}
	r.summarise()
	return r, nil
}

// runRound makes one change and waits until every client ACKed it. It
// returns the round and the load generator's CPU seconds at its end.
func runRound(ctx context.Context, cfg Config, srv *server, reg *registry, lp *loadProc, metrics func() (Metrics, error),
	weight uint32, progress io.Writer, record func(loadgen.Event)) (Round, float64, error) {
	rd := Round{Marker: weight}
	m0, err := metrics()
	if err != nil {
		return rd, 0, err
	}
	rd.Start = time.Now()
	if err := reg.setMarker(ctx, cfg, weight); err != nil {
		return rd, 0, err
	}
	rd.RegisterRPC = time.Since(rd.Start)
	isRound := func(ev loadgen.Event) bool { return ev.Event == "round" && ev.Marker == weight }
	ev, err := waitEvent(ctx, srv, lp, cfg.RoundTimeout, progress, record, isRound)
	if err != nil {
		// Ask for what arrived so far.
		fmt.Fprintf(progress, "round %d: %v; asking for the partial round\n", weight, err)
		if cerr := lp.command(fmt.Sprintf("report %d", weight)); cerr != nil {
			return rd, 0, err
		}
		if ev, err = waitEvent(ctx, srv, lp, 30*time.Second, progress, record, isRound); err != nil {
			return rd, 0, err
		}
	}
	// The xDS loop may still be working after the last ACK (Envoy sidecar
	// layers are rebuilt after the shared resources are pushed): wait for
	// the publish to end, so that its whole cost falls in this round and
	// none of it in the next.
	m1, err := waitPublish(ctx, metrics, m0, 30*time.Second)
	if err != nil {
		return rd, 0, err
	}
	rd.ServerCPU = time.Duration((m1.Sum("process_cpu_seconds_total") - m0.Sum("process_cpu_seconds_total")) * float64(time.Second))
	pushes := `meshplane_xds_pushes_total{type="eds"}`
	rd.EDSPushes = m1[pushes] - m0[pushes]
	rd.Publish = time.Duration((m1.Sum("meshplane_xds_publish_duration_seconds_sum") - m0.Sum("meshplane_xds_publish_duration_seconds_sum")) * float64(time.Second))
	conv := "meshplane_xds_convergence_seconds"
	rd.ServerConvergence = m1.Histogram(conv, `type="eds"`).Sub(m0.Histogram(conv, `type="eds"`))
	rd.Publishes = m1.Sum("meshplane_xds_publish_duration_seconds_count") - m0.Sum("meshplane_xds_publish_duration_seconds_count")
	for _, at := range ev.ScopedAckNs {
		rd.Scoped = append(rd.Scoped, time.Unix(0, at).Sub(rd.Start))
	}
	for _, at := range ev.WildcardAckNs {
		rd.Wildcard = append(rd.Wildcard, time.Unix(0, at).Sub(rd.Start))
	}
	rd.Missing = max(ev.Ready-len(rd.Scoped)-len(rd.Wildcard), 0)
	return rd, ev.CPUSeconds, nil
}

// waitEvent returns the first event that match accepts, writing progress
// events to progress and passing every event to record. It fails when the
// timeout passes or either child process exits.
func waitEvent(ctx context.Context, srv *server, lp *loadProc, timeout time.Duration, progress io.Writer,
	record func(loadgen.Event), match func(loadgen.Event) bool) (loadgen.Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-lp.events:
			if !ok {
				err := <-lp.done
				lp.done <- err
				return ev, fmt.Errorf("load generator exited (%v); see %s", err, lp.log.Name())
			}
			record(ev)
			switch ev.Event {
			case "progress":
				fmt.Fprintf(progress, "  %.0f s: %d ready, %d failed\n", ev.ElapsedSeconds, ev.Ready, ev.Failed)
			case "error":
				fmt.Fprintf(progress, "  client %s failed: %s\n", ev.Client, ev.Error)
			case "bad-command":
				fmt.Fprintf(progress, "  load generator: %s\n", ev.Error)
			}
			if match(ev) {
				return ev, nil
			}
		case err := <-srv.done:
			srv.done <- err
			return loadgen.Event{}, fmt.Errorf("control plane exited (%v); see %s", err, srv.log.Name())
		case <-deadline.C:
			return loadgen.Event{}, fmt.Errorf("no answer within %s", timeout)
		case <-ctx.Done():
			return loadgen.Event{}, ctx.Err()
		}
	}
}

// waitPublished waits until the xDS caches hold an EDS resource per service.
func waitPublished(ctx context.Context, metrics func() (Metrics, error), services int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	series := `meshplane_xds_resources{type="eds"}`
	var last float64
	for time.Now().Before(deadline) {
		m, err := metrics()
		if err != nil {
			return err
		}
		if !m.Has("meshplane_xds_resources") {
			return nil // a server without the gauge: nothing to wait on
		}
		if last = m[series]; int(last) >= services {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("harness: the xDS caches hold %.0f EDS resources after %s, want %d", last, timeout, services)
}

// waitPublish scrapes until meshplane_xds_publish_duration_seconds_count has
// grown past its value in before (or the server has no such metric) and
// returns that scrape.
func waitPublish(ctx context.Context, metrics func() (Metrics, error), before Metrics, timeout time.Duration) (Metrics, error) {
	const count = "meshplane_xds_publish_duration_seconds_count"
	deadline := time.Now().Add(timeout)
	for {
		m, err := metrics()
		if err != nil {
			return nil, err
		}
		if !m.Has(count) || m.Sum(count) > before.Sum(count) {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("harness: no xDS publish ended within %s of the change", timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
