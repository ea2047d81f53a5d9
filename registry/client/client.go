package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
)

// Protocol is the application protocol spoken on a port.
type Protocol string

// Protocols a port may declare.
const (
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolTCP   Protocol = "TCP"
)

// Health is what the instance reports about itself; only SERVING instances
// receive traffic.
type Health string

// Health states.
const (
	HealthServing    Health = "SERVING"
	HealthNotServing Health = "NOT_SERVING"
	HealthDraining   Health = "DRAINING"
)

// Port is one port the instance serves. Port is what mesh clients dial;
// TargetPort, when not 0, is where the instance actually listens.
type Port struct {
	Name       string
	Port       uint32
	TargetPort uint32
	Protocol   Protocol
}

// Locality is where the instance runs.
type Locality struct {
	Region, Zone, SubZone string
}

// Registration describes the instance. The server validates it (DNS-label
// names, ports 1..65535, ...); see meshplane.registry.v1.RegisterRequest.
type Registration struct {
	// Service and Namespace name the service (Namespace empty: "default").
	Service, Namespace string
	// Address is the instance's IP address or host name.
	Address string
	// InstanceID is optional; the server derives a stable one from Address
	// and Ports when empty, and the client reuses it for re-registrations.
	InstanceID string
	Ports      []Port
	Locality   Locality
	// Weight is 0..1000 (0 means 1).
	Weight   uint32
	Version  string
	Labels   map[string]string
	Metadata map[string]string
	// Health is the initial health; empty means SERVING.
	Health Health
	// TTL is the lease TTL, 5 s..300 s, whole seconds; 0 means the server's
	// default (15 s). The instance disappears this long after its last
	// heartbeat.
	TTL time.Duration
}

// Option configures a Client.
type Option func(*options)

type options struct {
	logger            *slog.Logger
	minBackoff        time.Duration
	maxBackoff        time.Duration
	deregisterTimeout time.Duration
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBackoff bounds the wait between failed registration attempts
// (default 200 ms growing to 10 s).
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = minDelay, maxDelay }
}

// WithDeregisterTimeout bounds the best-effort deregistration when Run's
// context ends (default 2 s).
func WithDeregisterTimeout(d time.Duration) Option {
	return func(o *options) { o.deregisterTimeout = d }
}

// Client keeps one instance registered. Its methods may be called from any
// goroutine.
type Client struct {
	api  registryv1.RegistryClient
	opts options

	mu         sync.Mutex
	reg        Registration
	id         string
	running    bool
	registered chan struct{}
	regOnce    sync.Once
}

// New makes a Client over a connection to the control plane. It checks only
// what the server cannot (a connection, a service, an address, a port, TTL
// in whole seconds); the server validates the rest when Run registers.
func New(conn grpc.ClientConnInterface, reg Registration, opts ...Option) (*Client, error) {
	if conn == nil {
		return nil, errors.New("client: nil connection")
	}
	switch {
	case reg.Service == "":
		return nil, errors.New("client: Registration.Service is required")
	case reg.Address == "":
		return nil, errors.New("client: Registration.Address is required")
	case len(reg.Ports) == 0:
		return nil, errors.New("client: Registration.Ports: at least one port is required")
	case reg.TTL < 0 || reg.TTL%time.Second != 0:
		return nil, fmt.Errorf("client: Registration.TTL %s: must be whole seconds", reg.TTL)
	}
	o := options{minBackoff: 200 * time.Millisecond, maxBackoff: 10 * time.Second, deregisterTimeout: 2 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.minBackoff <= 0 || o.maxBackoff < o.minBackoff {
		return nil, fmt.Errorf("client: backoff %s..%s: need 0 < min <= max", o.minBackoff, o.maxBackoff)
	}
	reg.Ports = append([]Port(nil), reg.Ports...)
	reg.Labels = cloneMap(reg.Labels)
	reg.Metadata = cloneMap(reg.Metadata)
	if reg.Health == "" {
		reg.Health = HealthServing
	}
	o.logger = o.logger.With("component", "registry-client", "service", reg.Service)
	return &Client{
		api:        registryv1.NewRegistryClient(conn),
		opts:       o,
		reg:        reg,
		id:         reg.InstanceID,
		registered: make(chan struct{}),
	}, nil
}

// InstanceID is the instance's id: the one given, or the one the server
// assigned at the first registration ("" before it).
func (c *Client) InstanceID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Registered is closed once the first registration has succeeded.
func (c *Client) Registered() <-chan struct{} { return c.registered }

// SetHealth changes the health the instance reports. It is remembered for
// every later registration and, when the instance is registered, sent now;
// if the control plane has lost the instance, Run registers it again with
// this health, and SetHealth returns nil.
func (c *Client) SetHealth(ctx context.Context, h Health) error {
	switch h {
	case HealthServing, HealthNotServing, HealthDraining:
	default:
		return fmt.Errorf("client: set health %q: must be SERVING, NOT_SERVING or DRAINING", h)
	}
	c.mu.Lock()
	c.reg.Health = h
	ns, svc, id := c.reg.Namespace, c.reg.Service, c.id
	c.mu.Unlock()
	select {
	case <-c.registered:
	default:
		return nil // sent with the first registration
	}
	_, err := c.api.SetHealth(ctx, &registryv1.SetHealthRequest{Namespace: ns, Service: svc, InstanceId: id, Health: healthToProto(h)})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("client: set health: %w", err)
	}
	return nil
}

// Run registers the instance and keeps it registered until ctx ends, then
// deregisters it (best effort, bounded by the deregister timeout). It
// retries failures with backoff and never gives up while ctx lasts, except
// when the server rejects the registration as invalid (INVALID_ARGUMENT),
// which it returns. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("client: Run is already running")
	}
	c.running = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()

	backoff := c.opts.minBackoff
	everRegistered := false
	for {
		ttl, err := c.register(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if status.Code(err) == codes.InvalidArgument {
				return fmt.Errorf("client: register: %w", err)
			}
			c.opts.logger.Warn("registration failed; retrying", "err", err, "retry_in", backoff)
			if !sleep(ctx, jitter(backoff)) {
				break
			}
			backoff = min(2*backoff, c.opts.maxBackoff)
			continue
		}
		backoff = c.opts.minBackoff
		everRegistered = true
		c.heartbeat(ctx, ttl)
		if ctx.Err() != nil {
			break
		}
	}
	if everRegistered {
		c.deregister(ctx)
	}
	return nil
}

// register sends one registration and returns the granted TTL.
func (c *Client) register(ctx context.Context) (time.Duration, error) {
	c.mu.Lock()
	req := c.requestLocked()
	health := c.reg.Health
	c.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.api.Register(rctx, req)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.id = resp.GetInstanceId()
	changed := c.reg.Health != health
	c.mu.Unlock()
	c.regOnce.Do(func() { close(c.registered) })
	c.opts.logger.Info("registered", "instance_id", resp.GetInstanceId(), "ttl_seconds", resp.GetTtlSeconds(), "revision", resp.GetRevision())
	if changed {
		// SetHealth raced with this registration: send the newer health.
		c.mu.Lock()
		h := c.reg.Health
		c.mu.Unlock()
		if err := c.SetHealth(ctx, h); err != nil {
			c.opts.logger.Warn("set health after registration failed", "err", err)
		}
	}
	ttl := time.Duration(resp.GetTtlSeconds()) * time.Second
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	return ttl, nil
}

// heartbeat keeps the lease alive every ttl/3 and returns when the instance
// must be registered again (the server says NOT_FOUND, or heartbeats have
// failed for a whole TTL, so the lease has likely expired) or ctx ends.
func (c *Client) heartbeat(ctx context.Context, ttl time.Duration) {
	interval := ttl / 3
	c.mu.Lock()
	req := &registryv1.HeartbeatRequest{Namespace: c.reg.Namespace, Service: c.reg.Service, InstanceId: c.id}
	c.mu.Unlock()
	lastOK := time.Now()
	wait := interval
	retry := c.opts.minBackoff
	for {
		if !sleep(ctx, wait) {
			return
		}
		hctx, cancel := context.WithTimeout(ctx, interval)
		_, err := c.api.Heartbeat(hctx, req)
		cancel()
		switch code := status.Code(err); {
		case err == nil:
			lastOK, wait, retry = time.Now(), interval, c.opts.minBackoff
		case ctx.Err() != nil:
			return
		case code == codes.NotFound:
			c.opts.logger.Info("control plane lost the instance; registering again", "instance_id", req.GetInstanceId())
			return
		case time.Since(lastOK) >= ttl:
			c.opts.logger.Warn("heartbeats failing for a whole TTL; registering again", "err", err)
			return
		default:
			c.opts.logger.Debug("heartbeat failed; retrying", "err", err)
			wait = min(jitter(retry), interval)
			retry = min(2*retry, c.opts.maxBackoff)
		}
	}
}

func (c *Client) deregister(ctx context.Context) {
	c.mu.Lock()
	req := &registryv1.DeregisterRequest{Namespace: c.reg.Namespace, Service: c.reg.Service, InstanceId: c.id}
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.deregisterTimeout)
	defer cancel()
	_, err := c.api.Deregister(dctx, req)
	if err != nil && status.Code(err) != codes.NotFound {
		c.opts.logger.Warn("deregister failed; the instance expires with its lease", "err", err)
		return
	}
	c.opts.logger.Info("deregistered", "instance_id", req.GetInstanceId())
}

func (c *Client) requestLocked() *registryv1.RegisterRequest {
	r := c.reg
	req := &registryv1.RegisterRequest{
		Service:    r.Service,
		Namespace:  r.Namespace,
		Address:    r.Address,
		InstanceId: c.id,
		Weight:     r.Weight,
		Version:    r.Version,
		Labels:     r.Labels,
		Metadata:   r.Metadata,
		Health:     healthToProto(r.Health),
		TtlSeconds: int64(r.TTL / time.Second),
	}
	if r.Locality != (Locality{}) {
		req.Locality = &registryv1.Locality{Region: r.Locality.Region, Zone: r.Locality.Zone, SubZone: r.Locality.SubZone}
	}
	for _, p := range r.Ports {
		req.Ports = append(req.Ports, &registryv1.Port{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort, Protocol: protocolToProto(p.Protocol)})
	}
	return req
}

func protocolToProto(p Protocol) registryv1.Protocol {
	switch p {
	case ProtocolGRPC:
		return registryv1.Protocol_PROTOCOL_GRPC
	case ProtocolHTTP:
		return registryv1.Protocol_PROTOCOL_HTTP
	case ProtocolHTTP2:
		return registryv1.Protocol_PROTOCOL_HTTP2
	case ProtocolTCP:
		return registryv1.Protocol_PROTOCOL_TCP
	default:
		return registryv1.Protocol_PROTOCOL_UNSPECIFIED // rejected by the server, naming the port
	}
}

func healthToProto(h Health) registryv1.Health {
	switch h {
	case HealthServing:
		return registryv1.Health_HEALTH_SERVING
	case HealthNotServing:
		return registryv1.Health_HEALTH_NOT_SERVING
	case HealthDraining:
		return registryv1.Health_HEALTH_DRAINING
	default:
		return registryv1.Health(-1) // rejected by the server
	}
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// jitter spreads retries of many instances: d/2..d.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
