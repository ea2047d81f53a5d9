package app

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "meshplane.yaml")
	if err := os.WriteFile(file, []byte("grpc-addr: 127.0.0.1:1111\nhttp-addr: 127.0.0.1:2222\nlog-level: warn\netcd-endpoints: [http://a:2379, http://b:2379]\nxds-hold-off: 50ms\nenvoy-tracing-service-percent: {checkout.shop: 25, greeter.default: 100}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MESHPLANE_CONFIG": file, "MESHPLANE_HTTP_ADDR": "127.0.0.1:3333", "MESHPLANE_LOG_LEVEL": "debug"}
	cfg, err := LoadConfig([]string{"--log-level", "error"}, envFrom(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCAddr != "127.0.0.1:1111" {
		t.Errorf("grpc-addr from file: got %q", cfg.GRPCAddr)
	}
	if cfg.HTTPAddr != "127.0.0.1:3333" {
		t.Errorf("http-addr: env must beat file, got %q", cfg.HTTPAddr)
	}
	if cfg.LogLevel != "error" {
		t.Errorf("log-level: flag must beat env and file, got %q", cfg.LogLevel)
	}
	if strings.Join(cfg.EtcdEndpoints, ",") != "http://a:2379,http://b:2379" {
		t.Errorf("etcd-endpoints from a YAML list: got %q", cfg.EtcdEndpoints)
	}
	if cfg.XDSHoldOff != 50*time.Millisecond {
		t.Errorf("xds-hold-off: got %s", cfg.XDSHoldOff)
	}
	if cfg.EnvoyTracingServicePercent["checkout.shop"] != 25 || cfg.EnvoyTracingServicePercent["greeter.default"] != 100 {
		t.Errorf("envoy-tracing-service-percent from the file: got %v", cfg.EnvoyTracingServicePercent)
	}
	if cfg.OTLPGRPCAddr != Defaults().OTLPGRPCAddr {
		t.Errorf("unset field must keep its default, got %q", cfg.OTLPGRPCAddr)
	}
}

func TestLoadConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("grcp-addr: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"bad address":        {args: []string{"--grpc-addr", "nonsense"}, want: "--grpc-addr"},
		"bad log level":      {args: []string{"--log-level", "loud"}, want: "--log-level"},
		"bad log format":     {env: map[string]string{"MESHPLANE_LOG_FORMAT": "xml"}, want: "--log-format"},
		"bad duration env":   {env: map[string]string{"MESHPLANE_XDS_HOLD_OFF": "soon"}, want: "MESHPLANE_XDS_HOLD_OFF"},
		"hold-off > max":     {args: []string{"--xds-hold-off", "2s", "--xds-max-delay", "1s"}, want: "--xds-hold-off"},
		"cert without key":   {args: []string{"--etcd-endpoints", "http://x:2379", "--etcd-cert-file", "c.pem"}, want: "--etcd-key-file"},
		"prefix":             {args: []string{"--etcd-prefix", "meshplane"}, want: "--etcd-prefix"},
		"unknown file key":   {args: []string{"--config", bad}, want: `unknown key "grcp-addr"`},
		"missing file":       {args: []string{"--config", filepath.Join(dir, "absent.yaml")}, want: "absent.yaml"},
		"stray argument":     {args: []string{"extra"}, want: `unexpected argument "extra"`},
		"telemetry limit":    {args: []string{"--otlp-queue-spans", "0"}, want: "QueueSpans"},
		"tracing percent":    {args: []string{"--envoy-tracing-percent", "101"}, want: "--envoy-tracing-percent"},
		"empty trust domain": {args: []string{"--trust-domain", ""}, want: "--trust-domain"},
		"service percent":    {args: []string{"--envoy-tracing-service-percent", "greeter.default=150"}, want: "greeter.default=150"},
		"service name":       {args: []string{"--envoy-tracing-service-percent", "greeter=5"}, want: "want name.namespace"},
		"service pair":       {args: []string{"--envoy-tracing-service-percent", "greeter.default"}, want: "want name.namespace=percent"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(tc.args, envFrom(tc.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func FuzzLoadConfigFile(f *testing.F) {
	f.Add([]byte("grpc-addr: 127.0.0.1:1\n"))
	f.Add([]byte("etcd-endpoints: [a, b]\nxds-hold-off: 1s\n"))
	f.Add([]byte("log-level: [1, {x: y}]\n"))
	f.Add([]byte(":::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig([]string{"--config", file}, envFrom(nil), io.Discard)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("LoadConfig accepted a config that fails Validate: %v", verr)
			}
		}
	})
}
