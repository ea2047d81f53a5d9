package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshplane/meshplane/bench/xds/loadgen"
)

// buildBinary runs `go build -o out pkg` in the module directory.
func buildBinary(ctx context.Context, moduleDir, pkg, out string, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("harness: go build %s: %w", pkg, err)
	}
	return nil
}

// freePorts returns n distinct loopback addresses that were free a moment
// ago. They are held open together so that no two are the same.
func freePorts(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("harness: find a free port: %w", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// server is the control plane child process.
type server struct {
	cmd       *exec.Cmd
	grpcAddr  string
	httpAddr  string
	pprofAddr string // profiling server only
	done      chan error
	log       *os.File
}

// startServer starts the control plane with a fresh data dir and explicit
// loopback ports and waits for /readyz.
func startServer(ctx context.Context, cfg Config, bin, dir string) (*server, error) {
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "controlplane.log"))
	if err != nil {
		return nil, fmt.Errorf("harness: server log: %w", err)
	}
	s := &server{grpcAddr: ports[0], httpAddr: ports[1], log: logFile, done: make(chan error, 1)}
	args := []string{
		"--data-dir", filepath.Join(dir, "data"),
		"--grpc-addr", ports[0],
		"--http-addr", ports[1],
		"--etcd-client-addr", ports[2],
		"--etcd-peer-addr", ports[3],
		"--otlp-grpc-addr", "",
		"--otlp-http-addr", "",
		"--xds-hold-off", cfg.HoldOff.String(),
		"--xds-max-delay", cfg.MaxDelay.String(),
		"--log-level", "warn",
	}
	if cfg.Profile {
		s.pprofAddr = ports[4]
		args = append([]string{"--pprof-addr", ports[4]}, args...)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("harness: start %s: %w", bin, err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	if err := s.waitReady(ctx, 2*time.Minute); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *server) metricsURL() string { return "http://" + s.httpAddr + "/metrics" }

func (s *server) waitReady(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("harness: control plane exited before ready (%v); see %s", err, s.log.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := client.Get("http://" + s.httpAddr + "/readyz")
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	return fmt.Errorf("harness: control plane not ready within %s; see %s", timeout, s.log.Name())
}

// stop sends SIGTERM, waits up to 20 s, then kills.
func (s *server) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	_ = s.log.Close()
}

// post calls one of the profiling server's control endpoints.
func (s *server) post(ctx context.Context, path string) error {
	if s.pprofAddr == "" {
		return errors.New("harness: not a profiling server")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.pprofAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("harness: POST %s: %w", path, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("harness: POST %s: %s: %s", path, resp.Status, body)
	}
	return nil
}

// save writes a GET of the profiling server's path to file.
func (s *server) save(ctx context.Context, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.pprofAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("harness: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("harness: GET %s: %s", path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// loadProc is the load generator child process.
type loadProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan loadgen.Event
	done   chan error
	log    *os.File
}

// startLoad starts the load generator with a plan file.
func startLoad(bin, dir string, plan loadgen.Plan) (*loadProc, error) {
	data, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return nil, err
	}
	planPath := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planPath, data, 0o644); err != nil {
		return nil, fmt.Errorf("harness: write plan: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "xdsload.log"))
	if err != nil {
		return nil, fmt.Errorf("harness: load generator log: %w", err)
	}
	p := &loadProc{cmd: exec.Command(bin, "-plan", planPath), events: make(chan loadgen.Event, 1024), done: make(chan error, 1), log: logFile}
	p.cmd.Stderr = logFile
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("harness: start %s: %w", bin, err)
	}
	go func() {
		defer close(p.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 64<<20) // a round of 10,000 ACK times is ~200 KB
		for sc.Scan() {
			var ev loadgen.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				fmt.Fprintf(logFile, "harness: bad event %q: %v\n", sc.Text(), err)
				continue
			}
			p.events <- ev
		}
	}()
	go func() { p.done <- p.cmd.Wait() }()
	return p, nil
}

// command writes one command line to the load generator.
func (p *loadProc) command(line string) error {
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// stop closes stdin (the generator exits on EOF), waits up to 30 s, then
// kills it.
func (p *loadProc) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	for range p.events {
	}
	_ = p.log.Close()
}
