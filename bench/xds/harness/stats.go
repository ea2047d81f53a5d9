package harness

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Latency summarises a set of durations.
type Latency struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50"`
	P99   time.Duration `json:"p99"`
	Max   time.Duration `json:"max"`
}

// Summarise returns the nearest-rank p50, p99 and maximum of ds (which it
// sorts).
func Summarise(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	return Latency{Count: len(ds), P50: percentile(ds, 50), P99: percentile(ds, 99), Max: ds[len(ds)-1]}
}

// percentile is the nearest-rank percentile of sorted ds: the smallest value
// with at least p% of the values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(rank, 1)
	rank = min(rank, len(sorted))
	return sorted[rank-1]
}

// Round is one change of the marker endpoint and what the clients saw.
type Round struct {
	Marker uint32 `json:"marker"`
	// Start is when the driver sent the change (Register); RegisterRPC is
	// how long that call took.
	Start       time.Time     `json:"start"`
	RegisterRPC time.Duration `json:"registerRpc"`
	// Scoped and Wildcard are, per client of each kind, the time from Start
	// to its ACK of the new EDS version (left out of the JSON: 10,000 per
	// round); Missing counts ready clients that did not report in time.
	Scoped   []time.Duration `json:"-"`
	Wildcard []time.Duration `json:"-"`
	Missing  int             `json:"missing"`
	// ServerCPU is the server's CPU time from just before the change to just
	// after the last ACK (embedded etcd included: same process);
	// EDSPushes is meshplane_xds_pushes_total{type="eds"} over the same
	// window; LoadCPU is the load generator's CPU time over it.
	ServerCPU time.Duration `json:"serverCpu"`
	EDSPushes float64       `json:"edsPushes"`
	LoadCPU   time.Duration `json:"loadCpu"`
	// Publish is the time the xDS loop spent translating, validating and
	// publishing in the window (meshplane_xds_publish_duration_seconds),
	// Publishes how many publishes that was.
	Publish   time.Duration `json:"publish"`
	Publishes float64       `json:"publishes"`
	// ServerConvergence is the server's own view over the window:
	// meshplane_xds_convergence_seconds{type="eds"} (from publishing a
	// changed resource to each data plane's ACK), as bucket deltas.
	ServerConvergence Buckets `json:"-"`
}

// Result is one benchmark run: one client count.
type Result struct {
	Scoped   int `json:"scoped"`
	Wildcard int `json:"wildcard"`
	// Ready and Failed count clients after the connect phase.
	Ready          int           `json:"ready"`
	Failed         int           `json:"failed"`
	ConnectTime    time.Duration `json:"connectTime"`
	OpenFilesLimit uint64        `json:"openFilesLimit"`

	// Registrations is how many instances were registered, in
	// RegistrationTime, with RegistrationErrors failed calls.
	Registrations      int           `json:"registrations"`
	RegistrationTime   time.Duration `json:"registrationTime"`
	RegistrationErrors int           `json:"registrationErrors"`

	// Memory before the load generator connected and after every client
	// held its configuration and the server sat idle; GCForced says whether
	// a GC ran before each reading (profiling server only).
	Before   MemSample `json:"before"`
	After    MemSample `json:"after"`
	GCForced bool      `json:"gcForced"`

	HoldOff time.Duration `json:"holdOff"`
	Rounds  []Round       `json:"rounds"`

	// Summaries over every round: all clients, and each kind alone.
	All     Latency  `json:"all"`
	ScopedL Latency  `json:"scopedLatency"`
	WildL   Latency  `json:"wildcardLatency"`
	Errors  []string `json:"errors,omitempty"`
}

// MemSample is the server's memory from /metrics.
type MemSample struct {
	HeapInuse  float64 `json:"heapInuseBytes"`
	StackInuse float64 `json:"stackInuseBytes"`
	RSS        float64 `json:"rssBytes"`
	Goroutines float64 `json:"goroutines"`
}

func memSample(m Metrics) MemSample {
	return MemSample{
		HeapInuse:  m.Sum("go_memstats_heap_inuse_bytes"),
		StackInuse: m.Sum("go_memstats_stack_inuse_bytes"),
		RSS:        m.Sum("process_resident_memory_bytes"),
		Goroutines: m.Sum("go_goroutines"),
	}
}

// PerClient is (after − before) / ready clients, in bytes.
func (r *Result) PerClient(f func(MemSample) float64) float64 {
	if r.Ready == 0 {
		return 0
	}
	return (f(r.After) - f(r.Before)) / float64(r.Ready)
}

// summarise fills the latency summaries from the rounds.
func (r *Result) summarise() {
	var all, scoped, wild []time.Duration
	for _, rd := range r.Rounds {
		scoped = append(scoped, rd.Scoped...)
		wild = append(wild, rd.Wildcard...)
	}
	all = append(append(all, scoped...), wild...)
	r.All, r.ScopedL, r.WildL = Summarise(all), Summarise(scoped), Summarise(wild)
}

// cpuPerChange is the mean server CPU time, EDS pushes and load generator
// CPU time per change round.
func (r *Result) cpuPerChange() (cpu time.Duration, pushes float64, load time.Duration) {
	if len(r.Rounds) == 0 {
		return 0, 0, 0
	}
	for _, rd := range r.Rounds {
		cpu += rd.ServerCPU
		pushes += rd.EDSPushes
		load += rd.LoadCPU
	}
	n := len(r.Rounds)
	return cpu / time.Duration(n), pushes / float64(n), load / time.Duration(n)
}

// publishPerChange is the mean publish time and count per change round.
func (r *Result) publishPerChange() (time.Duration, float64) {
	if len(r.Rounds) == 0 {
		return 0, 0
	}
	var d time.Duration
	var n float64
	for _, rd := range r.Rounds {
		d += rd.Publish
		n += rd.Publishes
	}
	return d / time.Duration(len(r.Rounds)), n / float64(len(r.Rounds))
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// afterHoldOff is d minus the hold-off, never below zero.
func afterHoldOff(d, holdOff time.Duration) time.Duration { return max(d-holdOff, 0) }

// WriteTable writes the results as the Markdown table of docs/benchmarks.md,
// followed by one detail line per run.
func WriteTable(w io.Writer, results []*Result) {
	fmt.Fprintln(w, "| clients (scoped + wildcard) | connected in | change → all ACKed p50 / p99 / max | p99 − hold-off | server heap+stack / client | server RSS / client | server CPU per change (per client) | registrations/s |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		cpu, _, _ := r.cpuPerChange()
		perClient := time.Duration(0)
		if r.Ready > 0 {
			perClient = cpu / time.Duration(r.Ready)
		}
		regs := 0.0
		if r.RegistrationTime > 0 {
			regs = float64(r.Registrations) / r.RegistrationTime.Seconds()
		}
		clients := fmt.Sprintf("%d + %d", r.Scoped, r.Wildcard)
		if r.Failed > 0 {
			clients += fmt.Sprintf(" (%d failed)", r.Failed)
		}
		fmt.Fprintf(w, "| %s | %s | %s / %s / %s | %s | %s | %s | %s (%.0f µs) | %.0f |\n",
			clients, ms(r.ConnectTime), ms(r.All.P50), ms(r.All.P99), ms(r.All.Max),
			ms(afterHoldOff(r.All.P99, r.HoldOff)),
			kib(r.PerClient(func(m MemSample) float64 { return m.HeapInuse + m.StackInuse })),
			kib(r.PerClient(func(m MemSample) float64 { return m.RSS })),
			ms(cpu), float64(perClient)/float64(time.Microsecond), regs)
	}
	fmt.Fprintln(w)
	for _, r := range results {
		cpu, pushes, load := r.cpuPerChange()
		missing := 0
		for _, rd := range r.Rounds {
			missing += rd.Missing
		}
		var b strings.Builder
		fmt.Fprintf(&b, "- %d + %d clients: %d rounds, %d samples, %d missing; scoped p50/p99/max %s/%s/%s, wildcard %s/%s/%s; ",
			r.Scoped, r.Wildcard, len(r.Rounds), r.All.Count, missing,
			ms(r.ScopedL.P50), ms(r.ScopedL.P99), ms(r.ScopedL.Max), ms(r.WildL.P50), ms(r.WildL.P99), ms(r.WildL.Max))
		conv := Buckets{}
		for _, rd := range r.Rounds {
			conv.Add(rd.ServerConvergence)
		}
		if p50, n := conv.Quantile(0.5); n > 0 {
			p99, _ := conv.Quantile(0.99)
			fmt.Fprintf(&b, "server-side EDS convergence (publish → ACK, histogram buckets) p50 ≤ %s, p99 ≤ %s over %.0f ACKs; ",
				bound(p50), bound(p99), n)
		}
		pub, pubs := r.publishPerChange()
		fmt.Fprintf(&b, "server CPU per change %s, EDS pushes per change %.0f, publishes per change %.1f taking %s (translate, validate, mark subscribed streams; the sends run after it), load generator CPU per change %s; ",
			ms(cpu), pushes, pubs, ms(pub), ms(load))
		fmt.Fprintf(&b, "heap %s → %s, stacks %s → %s, RSS %s → %s, goroutines %.0f → %.0f (%.1f per client)",
			mib(r.Before.HeapInuse), mib(r.After.HeapInuse), mib(r.Before.StackInuse), mib(r.After.StackInuse),
			mib(r.Before.RSS), mib(r.After.RSS), r.Before.Goroutines, r.After.Goroutines,
			r.PerClient(func(m MemSample) float64 { return m.Goroutines }))
		if r.GCForced {
			b.WriteString(" (after a forced GC)")
		}
		fmt.Fprintf(&b, "; %d registrations in %s (%d errors); RLIMIT_NOFILE %d",
			r.Registrations, ms(r.RegistrationTime), r.RegistrationErrors, r.OpenFilesLimit)
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "; error: %s", e)
		}
		fmt.Fprintln(w, b.String())
	}
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// bound prints a histogram bucket bound in milliseconds.
func bound(seconds float64) string {
	if math.IsInf(seconds, 1) {
		return "+Inf"
	}
	return ms(time.Duration(seconds * float64(time.Second)))
}
