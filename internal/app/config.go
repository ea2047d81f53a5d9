package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/telemetry"
)

// Config is everything `controlplane serve` is configured with. Each field is
// a flag, an environment variable (MESHPLANE_ + the flag name in upper snake
// case) and a key of the YAML config file (the flag name); a flag given on the
// command line beats the environment, which beats the file.
type Config struct {
	// ConfigFile is a YAML file of flag-name: value pairs; empty means none.
	ConfigFile string
	// DataDir holds the embedded etcd's data (when EtcdEndpoints is empty).
	DataDir string
	// GRPCAddr serves ADS, the Registry service, gRPC health and reflection.
	GRPCAddr string
	// HTTPAddr serves the REST API, /healthz, /readyz and /metrics.
	HTTPAddr string
	// OTLPGRPCAddr and OTLPHTTPAddr are the OTLP trace intake listeners; empty
	// disables that listener.
	OTLPGRPCAddr string
	OTLPHTTPAddr string
	// EtcdEndpoints are an external etcd cluster's client URLs; empty starts an
	// embedded single-member etcd in DataDir.
	EtcdEndpoints []string
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile configure TLS (client
	// certificate authentication) towards an external etcd; empty means none.
	EtcdCAFile   string
	EtcdCertFile string
	EtcdKeyFile  string
	// EtcdClientAddr and EtcdPeerAddr are the embedded etcd's listeners.
	EtcdClientAddr string
	EtcdPeerAddr   string
	// EtcdPrefix is the key prefix every Meshplane key lives under.
	EtcdPrefix string
	// EtcdRequestTimeout bounds each etcd request of a write path, so that a
	// registration fails fast with UNAVAILABLE when etcd is gone.
	EtcdRequestTimeout time.Duration
	// TrustDomain is the SPIFFE trust domain of workload identities.
	TrustDomain string
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string
	LogFormat string
	// XDSHoldOff is the quiet period the xDS loop waits for after a registry
	// change before it translates; XDSMaxDelay bounds the wait from the first
	// change of a burst. Zero means the default (100 ms, 1 s).
	XDSHoldOff  time.Duration
	XDSMaxDelay time.Duration
	// TraceForwardEndpoint is an upstream OTLP/gRPC endpoint (host:port) that
	// every received span batch is forwarded to; empty disables forwarding.
	TraceForwardEndpoint string
	// SelfTraceEndpoint is an OTLP/gRPC endpoint (host:port) the control
	// plane exports its own spans to; empty disables self-tracing.
	SelfTraceEndpoint string
	// EnvoyTracingPercent is the mesh-wide percentage of requests Envoy
	// sidecars sample and export to the OTLP intake; 0 disables Envoy tracing.
	EnvoyTracingPercent float64
	// EnvoyTracingServicePercent overrides EnvoyTracingPercent for the
	// sidecars of single services: "name.namespace" → percentage 0..100.
	EnvoyTracingServicePercent map[string]float64
	// ShutdownTimeout bounds graceful shutdown on SIGTERM.
	ShutdownTimeout time.Duration
	// Telemetry holds the OTLP intake's limits; its addresses and forward
	// endpoint are taken from the fields above. See telemetry.Config for
	// each field's unit and what zero means.
	Telemetry telemetry.Config
}

// Defaults returns the configuration `go run ./cmd/controlplane` uses.
func Defaults() Config {
	return Config{
		DataDir:            "./meshplane-data",
		GRPCAddr:           "127.0.0.1:15010",
		HTTPAddr:           "127.0.0.1:8080",
		OTLPGRPCAddr:       "127.0.0.1:4317",
		OTLPHTTPAddr:       "127.0.0.1:4318",
		EtcdClientAddr:     "127.0.0.1:2379",
		EtcdPeerAddr:       "127.0.0.1:2380",
		EtcdPrefix:         "/meshplane/",
		EtcdRequestTimeout: 3 * time.Second,
		TrustDomain:        "meshplane.local",
		LogLevel:           "info",
		LogFormat:          "text",
		XDSHoldOff:         100 * time.Millisecond,
		XDSMaxDelay:        time.Second,
		ShutdownTimeout:    15 * time.Second,
		Telemetry:          telemetry.Defaults(),
	}
}

// TelemetryConfig is the telemetry configuration Serve uses.
func (c Config) TelemetryConfig() telemetry.Config {
	t := c.Telemetry
	t.OTLPGRPCAddr = c.OTLPGRPCAddr
	t.OTLPHTTPAddr = c.OTLPHTTPAddr
	t.ForwardEndpoint = c.TraceForwardEndpoint
	return t
}

// Validate reports the first field that is out of range, by its flag name.
func (c Config) Validate() error {
	addrs := []struct{ name, v string }{
		{"grpc-addr", c.GRPCAddr}, {"http-addr", c.HTTPAddr},
		{"etcd-client-addr", c.EtcdClientAddr}, {"etcd-peer-addr", c.EtcdPeerAddr},
	}
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("config: --%s %q: want host:port", a.name, a.v)
		}
	}
	for _, a := range []struct{ name, v string }{{"otlp-grpc-addr", c.OTLPGRPCAddr}, {"otlp-http-addr", c.OTLPHTTPAddr}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("config: --%s %q: want host:port or empty", a.name, a.v)
		}
	}
	if len(c.EtcdEndpoints) == 0 && c.DataDir == "" {
		return errors.New("config: --data-dir: required when --etcd-endpoints is empty")
	}
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		return errors.New("config: --etcd-cert-file and --etcd-key-file: give both or neither")
	}
	if !strings.HasPrefix(c.EtcdPrefix, "/") || !strings.HasSuffix(c.EtcdPrefix, "/") {
		return fmt.Errorf("config: --etcd-prefix %q: must start and end with /", c.EtcdPrefix)
	}
	if c.EtcdRequestTimeout <= 0 {
		return fmt.Errorf("config: --etcd-request-timeout %s: must be positive", c.EtcdRequestTimeout)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: --log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("config: --log-format %q: want text or json", c.LogFormat)
	}
	if c.XDSHoldOff < 0 || c.XDSMaxDelay < 0 || (c.XDSMaxDelay > 0 && c.XDSHoldOff > c.XDSMaxDelay) {
		return fmt.Errorf("config: --xds-hold-off %s / --xds-max-delay %s: must be ≥ 0 and hold-off ≤ max-delay", c.XDSHoldOff, c.XDSMaxDelay)
	}
	if c.EnvoyTracingPercent < 0 || c.EnvoyTracingPercent > 100 {
		return fmt.Errorf("config: --envoy-tracing-percent %v: want 0..100", c.EnvoyTracingPercent)
	}
	for svc, p := range c.EnvoyTracingServicePercent {
		if p < 0 || p > 100 {
			return fmt.Errorf("config: --envoy-tracing-service-percent %s=%v: want 0..100", svc, p)
		}
		if name, ns, ok := strings.Cut(svc, "."); !ok || !dnsLabel.MatchString(name) || !dnsLabel.MatchString(ns) {
			return fmt.Errorf("config: --envoy-tracing-service-percent %q: want name.namespace", svc)
		}
	}
	if c.TrustDomain == "" {
		return errors.New("config: --trust-domain: must not be empty")
	}
	if err := c.TelemetryConfig().Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// dnsLabel is what service names and namespaces must be.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// percentMapFlag is a comma-separated list of key=percentage pairs.
type percentMapFlag struct{ v *map[string]float64 }

func (m percentMapFlag) String() string {
	if m.v == nil || len(*m.v) == 0 {
		return ""
	}
	parts := make([]string, 0, len(*m.v))
	for k, p := range *m.v {
		parts = append(parts, k+"="+strconv.FormatFloat(p, 'g', -1, 64))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (m percentMapFlag) Set(s string) error {
	out := map[string]float64{}
	for _, pair := range strings.Split(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return fmt.Errorf("%q: want name.namespace=percent", pair)
		}
		p, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return fmt.Errorf("%q: %w", pair, err)
		}
		out[strings.TrimSpace(k)] = p
	}
	*m.v = out
	return nil
}

// listFlag is a comma-separated list flag.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.v = append(*l.v, p)
		}
	}
	return nil
}

func (c *Config) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("controlplane serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "YAML config file of flag-name: value pairs")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the embedded etcd's data")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC listener: ADS, Registry, health, reflection")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP listener: REST API, /healthz, /readyz, /metrics")
	fs.StringVar(&c.OTLPGRPCAddr, "otlp-grpc-addr", c.OTLPGRPCAddr, "OTLP/gRPC trace intake (empty disables)")
	fs.StringVar(&c.OTLPHTTPAddr, "otlp-http-addr", c.OTLPHTTPAddr, "OTLP/HTTP trace intake (empty disables)")
	fs.Var(listFlag{&c.EtcdEndpoints}, "etcd-endpoints", "external etcd client URLs, comma-separated (empty starts an embedded etcd)")
	fs.StringVar(&c.EtcdCAFile, "etcd-ca-file", c.EtcdCAFile, "CA bundle to verify the external etcd's serving certificate")
	fs.StringVar(&c.EtcdCertFile, "etcd-cert-file", c.EtcdCertFile, "client certificate for the external etcd")
	fs.StringVar(&c.EtcdKeyFile, "etcd-key-file", c.EtcdKeyFile, "client key for the external etcd")
	fs.StringVar(&c.EtcdClientAddr, "etcd-client-addr", c.EtcdClientAddr, "embedded etcd client listener")
	fs.StringVar(&c.EtcdPeerAddr, "etcd-peer-addr", c.EtcdPeerAddr, "embedded etcd peer listener")
	fs.StringVar(&c.EtcdPrefix, "etcd-prefix", c.EtcdPrefix, "prefix of every Meshplane key in etcd")
	fs.DurationVar(&c.EtcdRequestTimeout, "etcd-request-timeout", c.EtcdRequestTimeout, "timeout of one etcd request on a write path")
	fs.StringVar(&c.TrustDomain, "trust-domain", c.TrustDomain, "SPIFFE trust domain")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.DurationVar(&c.XDSHoldOff, "xds-hold-off", c.XDSHoldOff, "quiet period before a registry change is pushed")
	fs.DurationVar(&c.XDSMaxDelay, "xds-max-delay", c.XDSMaxDelay, "longest wait from a change to its push during a burst")
	fs.StringVar(&c.TraceForwardEndpoint, "trace-forward-endpoint", c.TraceForwardEndpoint, "upstream OTLP/gRPC host:port to forward spans to (empty disables)")
	fs.StringVar(&c.SelfTraceEndpoint, "self-trace-endpoint", c.SelfTraceEndpoint, "OTLP/gRPC host:port for the control plane's own spans (empty disables)")
	fs.Float64Var(&c.EnvoyTracingPercent, "envoy-tracing-percent", c.EnvoyTracingPercent, "percentage of requests Envoy sidecars trace (0 disables)")
	fs.Var(percentMapFlag{&c.EnvoyTracingServicePercent}, "envoy-tracing-service-percent", "per-service overrides of --envoy-tracing-percent: name.namespace=percent,...")
	t := &c.Telemetry
	fs.IntVar(&t.QueueSpans, "otlp-queue-spans", t.QueueSpans, "spans accepted by the OTLP intake but not yet aggregated; more get back-pressure")
	fs.IntVar(&t.MaxBatchBytes, "otlp-max-batch-bytes", t.MaxBatchBytes, "largest OTLP request body in bytes, after decompression")
	fs.DurationVar(&t.PairingWait, "graph-pairing-wait", t.PairingWait, "how long a client or server span waits for its partner")
	fs.IntVar(&t.MaxEdgeSeries, "graph-max-edge-series", t.MaxEdgeSeries, "distinct service-graph series before overflow")
	fs.IntVar(&t.MaxSpanSeries, "span-metrics-max-series", t.MaxSpanSeries, "distinct span-metrics series before overflow")
	fs.IntVar(&t.TraceStoreSpans, "trace-store-spans", t.TraceStoreSpans, "spans kept for /api/v1/traces (0 disables the store)")
	fs.Int64Var(&t.TraceStoreBytes, "trace-store-bytes", t.TraceStoreBytes, "encoded span bytes kept for /api/v1/traces")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound on graceful shutdown")
	return fs
}

// envName is the environment variable for a flag: MESHPLANE_GRPC_ADDR.
func envName(flagName string) string {
	return "MESHPLANE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// LoadConfig parses args over Defaults(), then fills every flag not given on
// the command line from the environment, then from the config file.
func LoadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Defaults()
	fs := c.flagSet(stderr)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["config"] {
		if v := getenv(envName("config")); v != "" {
			c.ConfigFile = v
		}
	}
	var file map[string]any
	if c.ConfigFile != "" {
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if err := yaml.Unmarshal(data, &file); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", c.ConfigFile, err)
		}
		for k := range file {
			if fs.Lookup(k) == nil || k == "config" {
				return Config{}, fmt.Errorf("config: %s: unknown key %q", c.ConfigFile, k)
			}
		}
	}
	var setErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || f.Name == "config" || setErr != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				setErr = fmt.Errorf("config: %s=%q: %w", envName(f.Name), v, err)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			s := fileValue(v)
			if err := fs.Set(f.Name, s); err != nil {
				setErr = fmt.Errorf("config: %s: key %q=%q: %w", c.ConfigFile, f.Name, s, err)
			}
		}
	})
	if setErr != nil {
		return Config{}, setErr
	}
	return c, c.Validate()
}

// fileValue renders a YAML scalar, list or map as the string a flag accepts.
func fileValue(v any) string {
	switch t := v.(type) {
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		parts := make([]string, 0, len(t))
		for k, e := range t {
			parts = append(parts, k+"="+fmt.Sprint(e))
		}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	case nil:
		return ""
	default:
		return fmt.Sprint(t)
	}
}
