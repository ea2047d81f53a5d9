package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Event is one JSON line the generator writes.
type Event struct {
	// Event is "progress" (clients still connecting), "ready" (every client
	// has its initial configuration or has failed), "round" (the clients that
	// saw one marker value), "error" (a client failed; only the first few are
	// written) or "bad-command".
	Event          string  `json:"event"`
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	// Ready counts clients that hold their initial configuration and have not
	// failed since; Failed counts clients whose stream ended with an error.
	Ready  int `json:"ready"`
	Failed int `json:"failed"`
	// Marker is the marker weight a round is about; Complete says whether
	// every ready client reported it (false when the driver asked early).
	Marker   uint32 `json:"marker,omitempty"`
	Complete bool   `json:"complete,omitempty"`
	// ScopedAckNs and WildcardAckNs are, per client that saw the marker, the
	// wall clock (Unix nanoseconds) right after it sent the ACK.
	ScopedAckNs   []int64 `json:"scopedAckNs,omitempty"`
	WildcardAckNs []int64 `json:"wildcardAckNs,omitempty"`
	// CPUSeconds is the generator process's user+system CPU time so far.
	CPUSeconds float64 `json:"cpuSeconds"`
	// OpenFilesLimit is RLIMIT_NOFILE's soft limit (ready events).
	OpenFilesLimit uint64 `json:"openFilesLimit,omitempty"`
	// Client and Error describe a failure.
	Client string `json:"client,omitempty"`
	Error  string `json:"error,omitempty"`
}

// maxErrorEvents bounds the error events written; later failures are only
// counted, so that ten thousand refused connections do not flood the driver.
const maxErrorEvents = 20

// Generator runs the clients of one Plan and reports on them.
type Generator struct {
	plan  Plan
	start time.Time

	outMu sync.Mutex
	out   *json.Encoder

	mu           sync.Mutex
	ready        int // ready and not failed since
	failed       int
	failedEarly  int // failed before they were ready
	errorsSent   int
	readySent    bool
	rounds       map[uint32]*round
	openFilesMax uint64
}

type round struct {
	scoped, wildcard []int64
}

// New checks the plan and returns a generator that writes its events to out.
func New(plan Plan, out io.Writer) (*Generator, error) {
	if err := plan.Validate(); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("loadgen: out: must not be nil")
	}
	return &Generator{plan: plan, out: json.NewEncoder(out), rounds: map[uint32]*round{}}, nil
}

// Run starts every client and runs until ctx ends, commands reach EOF or a
// "quit" command. commands (nil for none) accepts lines "report <marker>",
// which writes the round of that marker as it stands, and "quit".
func (g *Generator) Run(ctx context.Context, commands io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g.start = time.Now()
	g.openFilesMax = raiseOpenFilesLimit()
	total := g.plan.Scoped + g.plan.Wildcard
	clients := make([]*client, 0, total)
	for i := 0; i < g.plan.Wildcard; i++ {
		c, err := newClient(g.plan, i, true)
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}
	for i := 0; i < g.plan.Scoped; i++ {
		c, err := newClient(g.plan, i, false)
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}

	if commands != nil {
		go func() {
			defer cancel()
			g.readCommands(ctx, commands)
		}()
	}
	settled := make(chan struct{})
	go g.progress(ctx, settled)

	sem := make(chan struct{}, g.plan.dialConcurrency())
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.runClient(ctx, c, sem, settled)
		}()
	}
	wg.Wait()
	return nil
}

// runClient holds a dial slot until the client is ready or fails.
func (g *Generator) runClient(ctx context.Context, c *client, sem chan struct{}, settled chan struct{}) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	holding := true
	release := func() {
		if holding {
			holding = false
			<-sem
		}
	}
	defer release()
	err := c.run(ctx, g.plan.Addr, hooks{
		ready: func() {
			release()
			g.clientReady(settled)
		},
		changed: func(marker uint32, at int64) { g.record(marker, c.wildcard, at) },
	})
	if ctx.Err() != nil {
		return // shutting down: not a failure
	}
	g.clientFailed(c, err, settled)
}

func (g *Generator) clientReady(settled chan struct{}) {
	g.mu.Lock()
	g.ready++
	ev := g.readyEventLocked(settled)
	g.mu.Unlock()
	if ev != nil {
		g.write(ev)
	}
}

func (g *Generator) clientFailed(c *client, err error, settled chan struct{}) {
	kind := "scoped"
	if c.wildcard {
		kind = "wildcard"
	}
	g.mu.Lock()
	g.failed++
	if c.ready {
		g.ready--
	} else {
		g.failedEarly++
	}
	var evs []*Event
	if g.errorsSent < maxErrorEvents {
		g.errorsSent++
		evs = append(evs, &Event{Event: "error", Client: kind + "-" + strconv.Itoa(c.id), Error: err.Error()})
	}
	if ev := g.readyEventLocked(settled); ev != nil {
		evs = append(evs, ev)
	}
	// One client fewer may complete a round that waited only for it.
	for marker, r := range g.rounds {
		if len(r.scoped)+len(r.wildcard) >= g.ready && g.readySent {
			evs = append(evs, g.roundEventLocked(marker, r, true))
		}
	}
	g.mu.Unlock()
	for _, ev := range evs {
		g.write(ev)
	}
}

// readyEventLocked returns the ready event once every client is ready or
// failed, and nil before and after.
func (g *Generator) readyEventLocked(settled chan struct{}) *Event {
	if g.readySent || g.ready+g.failedEarly < g.plan.Scoped+g.plan.Wildcard {
		return nil
	}
	g.readySent = true
	close(settled)
	return &Event{Event: "ready", Ready: g.ready, Failed: g.failed, OpenFilesLimit: g.openFilesMax}
}

// record notes that a client ACKed a new marker value and writes the round
// once every ready client has.
func (g *Generator) record(marker uint32, wildcard bool, at int64) {
	g.mu.Lock()
	r := g.rounds[marker]
	if r == nil {
		r = &round{}
		g.rounds[marker] = r
	}
	if wildcard {
		r.wildcard = append(r.wildcard, at)
	} else {
		r.scoped = append(r.scoped, at)
	}
	var ev *Event
	if g.readySent && len(r.scoped)+len(r.wildcard) >= g.ready {
		ev = g.roundEventLocked(marker, r, true)
	}
	g.mu.Unlock()
	if ev != nil {
		g.write(ev)
	}
}

// roundEventLocked turns a round into its event and forgets it.
func (g *Generator) roundEventLocked(marker uint32, r *round, complete bool) *Event {
	delete(g.rounds, marker)
	return &Event{Event: "round", Marker: marker, Complete: complete, ScopedAckNs: r.scoped, WildcardAckNs: r.wildcard}
}

// write stamps an event with the time, the counters and the CPU used, and
// writes it as one line.
func (g *Generator) write(ev *Event) {
	g.mu.Lock()
	if ev.Event != "ready" {
		ev.Ready, ev.Failed = g.ready, g.failed
	}
	g.mu.Unlock()
	ev.ElapsedSeconds = time.Since(g.start).Seconds()
	ev.CPUSeconds = cpuSeconds()
	g.outMu.Lock()
	defer g.outMu.Unlock()
	_ = g.out.Encode(ev) // a closed stdout ends the run through stdin EOF
}

func (g *Generator) progress(ctx context.Context, settled chan struct{}) {
	t := time.NewTicker(g.plan.progressInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-settled:
			return
		case <-t.C:
			g.write(&Event{Event: "progress"})
		}
	}
}

func (g *Generator) readCommands(ctx context.Context, commands io.Reader) {
	sc := bufio.NewScanner(commands)
	for sc.Scan() {
		if ctx.Err() != nil {
			return
		}
		cmd, marker, err := ParseCommand(sc.Text())
		switch {
		case err != nil:
			g.write(&Event{Event: "bad-command", Error: err.Error()})
		case cmd == "quit":
			return
		case cmd == "report":
			g.mu.Lock()
			r := g.rounds[marker]
			if r == nil {
				r = &round{}
			}
			ev := g.roundEventLocked(marker, r, false)
			g.mu.Unlock()
			g.write(ev)
		}
	}
}

// ParseCommand parses one command line: "report <marker>" or "quit".
func ParseCommand(line string) (cmd string, marker uint32, err error) {
	fields := strings.Fields(line)
	switch {
	case len(fields) == 1 && fields[0] == "quit":
		return "quit", 0, nil
	case len(fields) == 2 && fields[0] == "report":
		m, err := strconv.ParseUint(fields[1], 10, 32)
		if err != nil {
			return "", 0, fmt.Errorf("loadgen: command %q: marker: want an unsigned 32-bit integer", line)
		}
		return "report", uint32(m), nil
	default:
		return "", 0, fmt.Errorf("loadgen: command %q: want \"report <marker>\" or \"quit\"", line)
	}
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// raiseOpenFilesLimit lifts RLIMIT_NOFILE's soft limit to the hard limit
// (every client is a socket) and returns the soft limit now in force. Go
// already does this at start-up since 1.19; doing it here makes it explicit.
func raiseOpenFilesLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return lim.Cur
}
