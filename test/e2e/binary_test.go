package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
)

// buildBinary builds cmd/controlplane once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "controlplane")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/meshplane/meshplane/cmd/controlplane")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// TestBinaryStartRegisterSIGTERMRestart runs the real binary the way the
// README does (`controlplane` with flags), registers an instance, stops it
// with SIGTERM, checks it shut down cleanly, and starts it again on the same
// data dir: the registration survived.
func TestBinaryStartRegisterSIGTERMRestart(t *testing.T) {
	bin := buildBinary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{
		"--data-dir", dataDir,
		"--grpc-addr", freeAddr(t), "--http-addr", freeAddr(t),
		"--otlp-grpc-addr", freeAddr(t), "--otlp-http-addr", freeAddr(t),
		"--etcd-client-addr", freeAddr(t), "--etcd-peer-addr", freeAddr(t),
	}
	grpcAddr, httpAddr := args[3], args[5]
	start := func() (*exec.Cmd, *bytes.Buffer) {
		var out bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		waitFor(t, 60*time.Second, "the binary to be ready", func() error {
			resp, err := http.Get("http://" + httpAddr + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("readyz %d", resp.StatusCode)
			}
			return nil
		})
		return cmd, &out
	}
	stop := func(cmd *exec.Cmd, out *bytes.Buffer) {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil { // a non-zero exit status is an *exec.ExitError
				t.Fatalf("exit after SIGTERM: %v\n%s", err, out)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("no exit within 60s of SIGTERM\n%s", out)
		}
		for _, line := range []string{"control plane listening", "grpc=" + grpcAddr, "shutting down", "embedded etcd stopped", "control plane stopped"} {
			if !strings.Contains(out.String(), line) {
				t.Errorf("log lacks %q:\n%s", line, out)
			}
		}
	}

	cmd, out := start()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := registryv1.NewRegistryClient(conn)
	reg, err := rc.Register(t.Context(), &registryv1.RegisterRequest{
		Service: "greeter", Address: "127.0.0.1", TtlSeconds: 300,
		Ports: []*registryv1.Port{{Name: "grpc", Port: 50051, Protocol: registryv1.Protocol_PROTOCOL_GRPC}},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop(cmd, out)

	cmd, out = start()
	defer stop(cmd, out)
	waitFor(t, 30*time.Second, "the registration to be served after the restart", func() error {
		svc, err := rc.GetService(t.Context(), &registryv1.GetServiceRequest{Namespace: "default", Name: "greeter"})
		if err != nil {
			return err
		}
		ins := svc.GetService().GetInstances()
		if len(ins) != 1 || ins[0].GetId() != reg.GetInstanceId() {
			return fmt.Errorf("instances %v, want %s", ins, reg.GetInstanceId())
		}
		return nil
	})
}
