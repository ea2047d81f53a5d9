package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Errors that callers branch on (with errors.Is); the gRPC service maps them
// to status codes. They are always returned wrapped, with the package prefix
// and the object concerned.
var (
	// ErrNotFound: the instance (or its lease) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: etcd could not be reached, had no leader, or did not
	// answer within the request timeout.
	ErrUnavailable = errors.New("etcd unavailable")
	// ErrConflict: the instance kept changing under a write; retrying may help.
	ErrConflict = errors.New("concurrent modification")
)

// DefaultRequestTimeout bounds each etcd request of a write.
const DefaultRequestTimeout = 3 * time.Second

// maxTxnAttempts bounds the compare-and-swap retries of one write when other
// writers keep changing the same instance.
const maxTxnAttempts = 32

// StoreOptions configures a Store. The zero value is usable.
type StoreOptions struct {
	// Prefix is the etcd key prefix; empty means DefaultPrefix ("/meshplane/").
	Prefix string
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the store's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// RequestTimeout bounds each etcd request of a write or read; zero means
	// DefaultRequestTimeout (3 s). When etcd is gone, writes fail with
	// ErrUnavailable after at most this long per attempt.
	RequestTimeout time.Duration
	// TracerProvider makes the spans of Register and Deregister; nil means no
	// tracing.
	TracerProvider trace.TracerProvider
}

// Store keeps instances in etcd, each key bound to its own lease, and a
// watch-fed in-memory view of them (see Run, Snapshot).
//
// Key layout: <prefix>v1/instances/<namespace>/<service>/<id> holds the JSON
// Instance; the key's lease has the instance's TTL.
type Store struct {
	cli     *clientv3.Client
	keys    keys
	logger  *slog.Logger
	metrics *metrics
	timeout time.Duration
	tracer  trace.Tracer
	batch   *txnBatcher

	mu       sync.Mutex
	running  bool
	listed   bool // a full list has been applied since the store was made
	ready    bool // listed and Run is running
	rev      int64
	entries  map[string]entry
	services map[serviceKey]int // instance count per service
	dirty    bool
	snap     Snapshot
}

type entry struct {
	inst  Instance
	lease clientv3.LeaseID
}

type serviceKey struct{ ns, name string }

// NewStore makes a Store over an etcd client. It does not talk to etcd until
// Run or a write is called.
func NewStore(cli *clientv3.Client, opts StoreOptions) (*Store, error) {
	if cli == nil {
		return nil, errors.New("registry: NewStore: nil etcd client")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	timeout := opts.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return &Store{
		cli:      cli,
		keys:     newKeys(opts.Prefix),
		logger:   logger.With("component", "registry"),
		metrics:  m,
		timeout:  timeout,
		tracer:   tp.Tracer("github.com/meshplane/meshplane/registry"),
		batch:    &txnBatcher{kv: cli, timeout: timeout},
		entries:  map[string]entry{},
		services: map[serviceKey]int{},
		snap:     Snapshot{Services: []Service{}},
	}, nil
}

// RegisterResult is what a registration produced.
type RegisterResult struct {
	// ID is the instance id (given or derived).
	ID string
	// TTLSeconds is the TTL of the instance's lease.
	TTLSeconds int64
	// Revision is the etcd revision of the write.
	Revision int64
	// Created is false when an existing instance was updated.
	Created bool
}

// opCtx bounds one etcd request and makes it fail fast without a leader.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return clientv3.WithRequireLeader(ctx), cancel
}

// etcdErr classifies an etcd error: the caller's own cancellation stays a
// context error, everything else is ErrUnavailable.
func (s *Store) etcdErr(ctx context.Context, op string, err error) error {
	s.metrics.etcdErrors.WithLabelValues(op).Inc()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("registry: %s: %w", op, ctxErr)
	}
	return fmt.Errorf("registry: %s: %w: %w", op, ErrUnavailable, err)
}

// Register normalises and validates in (see NormalizeInstance), then creates
// or updates its key. The same instance registered again keeps its key and,
// when its TTL is unchanged, its live lease (refreshed); otherwise a new lease
// is granted, the key moved to it in one transaction and the old lease
// revoked. Nothing is left half-written: a lease granted for a write that
// fails is revoked. Errors: *ValidationError, ErrUnavailable, ErrConflict or
// a context error.
//
// Cost: a new instance takes two etcd requests (a lease grant, then a
// transaction that creates the key if it still does not exist), an update
// with the same TTL a keep-alive and a transaction. The write starts from
// what the watch cache (Run) knows of the key and compares against it; when
// the cache was wrong, the failed transaction returns the key as it is and
// the write is tried again from there. Without a running cache the key is
// read first. Under load the transactions of concurrent registrations are
// merged into one etcd transaction (see txnBatcher): one raft proposal for
// many writes, each still decided by its own compare.
func (s *Store) Register(ctx context.Context, in Instance) (RegisterResult, error) {
	ctx, span := s.tracer.Start(ctx, "registry.Register", trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()
	res, err := s.register(ctx, &in)
	span.SetAttributes(
		attribute.String("meshplane.namespace", in.Namespace),
		attribute.String("meshplane.service", in.Service),
		attribute.String("meshplane.instance_id", in.ID),
	)
	switch {
	case err == nil:
		span.SetAttributes(attribute.Bool("meshplane.created", res.Created), attribute.Int64("etcd.revision", res.Revision))
		if res.Created {
			s.metrics.registrations.WithLabelValues(resultCreated).Inc()
		} else {
			s.metrics.registrations.WithLabelValues(resultUpdated).Inc()
		}
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		if _, ok := AsValidationError(err); ok {
			s.metrics.registrations.WithLabelValues(resultInvalid).Inc()
		} else {
			s.metrics.registrations.WithLabelValues(resultError).Inc()
		}
	}
	return res, err
}

func (s *Store) register(ctx context.Context, in *Instance) (RegisterResult, error) {
	if err := NormalizeInstance(in); err != nil {
		return RegisterResult{}, err
	}
	in.ModRevision = 0
	key := s.keys.instance(in.Namespace, in.Service, in.ID)
	val, err := json.Marshal(in)
	if err != nil {
		return RegisterResult{}, fmt.Errorf("registry: encode instance: %w", err)
	}
	cur, known := s.cachedState(key)
	for range maxTxnAttempts {
		if !known {
			// No watch cache to ask (Run is not running or has not listed):
			// read the key, once; later attempts learn it from the failed
			// transaction.
			if cur, err = s.getState(ctx, key); err != nil {
				return RegisterResult{}, err
			}
			known = true
		}
		res, done, err := s.registerOnce(ctx, key, in.TTLSeconds, string(val), &cur)
		if err != nil || done {
			res.ID = in.ID
			res.TTLSeconds = in.TTLSeconds
			return res, err
		}
	}
	return RegisterResult{}, fmt.Errorf("registry: register %s: %w", key, ErrConflict)
}

// keyState is what a write assumes about an instance key: its compare-and-swap
// precondition. It comes from the watch cache, a Get, or the Else branch of a
// transaction whose compare failed.
type keyState struct {
	modRev int64 // 0: the key does not exist
	lease  clientv3.LeaseID
	ttl    int64 // the TTL the stored instance was registered with
}

// cachedState is the key's state as the watch cache last saw it; known is
// false when the cache has not listed etcd or Run is not running. It may lag
// etcd: the write's compare catches that.
func (s *Store) cachedState(key string) (st keyState, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready {
		return keyState{}, false
	}
	e, ok := s.entries[key]
	if !ok {
		return keyState{}, true
	}
	return keyState{modRev: e.inst.ModRevision, lease: e.lease, ttl: e.inst.TTLSeconds}, true
}

// getState reads the key's state from etcd.
func (s *Store) getState(ctx context.Context, key string) (keyState, error) {
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	get, err := s.cli.Get(octx, key)
	if err != nil {
		return keyState{}, s.etcdErr(ctx, "register", err)
	}
	return stateOf(get.Kvs), nil
}

// stateOf makes the state of a key from the result of a Get of it.
func stateOf(kvs []*mvccpb.KeyValue) keyState {
	if len(kvs) != 1 {
		return keyState{}
	}
	kv := kvs[0]
	st := keyState{modRev: kv.ModRevision, lease: clientv3.LeaseID(kv.Lease)}
	var old struct {
		TTLSeconds int64 `json:"ttlSeconds"`
	}
	if json.Unmarshal(kv.Value, &old) == nil {
		st.ttl = old.TTLSeconds
	}
	return st
}

// registerOnce makes one attempt assuming the key is in state cur: at best
// one lease grant (or keep-alive) and one transaction. done is false when
// the compare failed (cur then holds the key's current state, read in the
// same transaction) or a lease expired in between, and the caller should try
// again.
func (s *Store) registerOnce(ctx context.Context, key string, ttl int64, val string, cur *keyState) (res RegisterResult, done bool, err error) {
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if cur.modRev != 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", cur.modRev)
	}
	// commit puts val on lease if cmp holds; otherwise it reads the key into
	// cur, so that the retry needs no Get of its own.
	commit := func(lease clientv3.LeaseID) (*clientv3.TxnResponse, error) {
		txn, err := s.batch.commit(octx, key, cmp, clientv3.OpPut(key, val, clientv3.WithLease(lease)), clientv3.OpGet(key))
		if err == nil && !txn.Succeeded {
			*cur = stateOf(txn.Responses[0].GetResponseRange().GetKvs())
		}
		return txn, err
	}
	if cur.modRev != 0 && cur.lease != 0 && cur.ttl == ttl {
		// Same TTL: refresh the live lease and rewrite the value on it.
		_, err := s.cli.KeepAliveOnce(octx, cur.lease)
		switch {
		case err == nil:
			txn, err := commit(cur.lease)
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				*cur = keyState{modRev: cur.modRev} // expired in between: start over on a new lease
				return res, false, nil
			}
			if err != nil {
				return res, false, s.etcdErr(ctx, "register", err)
			}
			return RegisterResult{Revision: txn.Header.Revision}, txn.Succeeded, nil
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			// The lease just expired; its key is about to go. Bind the
			// value to a new lease below (the compare keeps it safe).
		default:
			return res, false, s.etcdErr(ctx, "register", err)
		}
	}
	oldLease := cur.lease
	created := cur.modRev == 0
	grant, err := s.cli.Grant(octx, ttl)
	if err != nil {
		return res, false, s.etcdErr(ctx, "register", err)
	}
	txn, err := commit(grant.ID)
	if err != nil || !txn.Succeeded {
		s.revokeQuietly(ctx, grant.ID)
		if err != nil {
			return res, false, s.etcdErr(ctx, "register", err)
		}
		return res, false, nil
	}
	if oldLease != 0 && oldLease != grant.ID {
		// The key is on the new lease now; the old one holds nothing.
		s.revokeQuietly(ctx, oldLease)
	}
	return RegisterResult{Revision: txn.Header.Revision, Created: created}, true, nil
}

// revokeQuietly revokes a lease best-effort, even when ctx has ended: a
// lease left behind would only expire on its own, but a clean store is
// easier to reason about.
func (s *Store) revokeQuietly(ctx context.Context, id clientv3.LeaseID) {
	rctx, cancel := s.opCtx(context.WithoutCancel(ctx))
	defer cancel()
	if _, err := s.cli.Revoke(rctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.metrics.etcdErrors.WithLabelValues("revoke").Inc()
		s.logger.Warn("revoke lease failed; it will expire on its own", "lease", fmt.Sprintf("%x", int64(id)), "err", err)
	}
}

// Heartbeat keeps the instance's lease alive and returns its remaining TTL
// in seconds. ErrNotFound when the instance or its lease is gone (the caller
// should register again).
func (s *Store) Heartbeat(ctx context.Context, ns, service, id string) (int64, error) {
	ns, err := ValidateRef(ns, service, id)
	if err != nil {
		return 0, err
	}
	key := s.keys.instance(ns, service, id)
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	// The watch cache usually knows the lease: one round trip instead of two.
	if lease, ok := s.cachedLease(key); ok {
		ka, err := s.cli.KeepAliveOnce(octx, lease)
		if err == nil {
			return ka.TTL, nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, s.etcdErr(ctx, "heartbeat", err)
		}
		// The cache may lag a re-registration onto a new lease: ask etcd.
	}
	get, err := s.cli.Get(octx, key)
	if err != nil {
		return 0, s.etcdErr(ctx, "heartbeat", err)
	}
	if len(get.Kvs) == 0 || get.Kvs[0].Lease == 0 {
		return 0, fmt.Errorf("registry: heartbeat %s/%s/%s: %w", ns, service, id, ErrNotFound)
	}
	ka, err := s.cli.KeepAliveOnce(octx, clientv3.LeaseID(get.Kvs[0].Lease))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("registry: heartbeat %s/%s/%s: lease expired: %w", ns, service, id, ErrNotFound)
	}
	if err != nil {
		return 0, s.etcdErr(ctx, "heartbeat", err)
	}
	return ka.TTL, nil
}

// SetHealth changes the health the instance reports, keeping its lease.
// It returns the revision of the change (or of the instance, when the health
// was already h). Errors: *ValidationError, ErrNotFound, ErrUnavailable,
// ErrConflict.
func (s *Store) SetHealth(ctx context.Context, ns, service, id string, h Health) (int64, error) {
	ns, err := ValidateRef(ns, service, id)
	if err == nil {
		err = ValidateHealth(h)
	}
	if err != nil {
		return 0, err
	}
	key := s.keys.instance(ns, service, id)
	for range maxTxnAttempts {
		rev, done, err := s.setHealthOnce(ctx, key, h)
		if err != nil || done {
			return rev, err
		}
	}
	return 0, fmt.Errorf("registry: set health %s: %w", key, ErrConflict)
}

func (s *Store) setHealthOnce(ctx context.Context, key string, h Health) (int64, bool, error) {
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	get, err := s.cli.Get(octx, key)
	if err != nil {
		return 0, false, s.etcdErr(ctx, "set_health", err)
	}
	if len(get.Kvs) == 0 {
		return 0, false, fmt.Errorf("registry: set health %s: %w", key, ErrNotFound)
	}
	kv := get.Kvs[0]
	var in Instance
	if err := json.Unmarshal(kv.Value, &in); err != nil {
		return 0, false, fmt.Errorf("registry: decode %s: %w", key, err)
	}
	if in.Health == h {
		return kv.ModRevision, true, nil
	}
	in.Health = h
	val, err := json.Marshal(in)
	if err != nil {
		return 0, false, fmt.Errorf("registry: encode %s: %w", key, err)
	}
	txn, err := s.cli.Txn(octx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		return 0, false, s.etcdErr(ctx, "set_health", err)
	}
	return txn.Header.Revision, txn.Succeeded, nil
}

// Deregister deletes the instance's key and revokes its lease, returning the
// revision of the delete. Errors: *ValidationError, ErrNotFound,
// ErrUnavailable, ErrConflict.
func (s *Store) Deregister(ctx context.Context, ns, service, id string) (int64, error) {
	ctx, span := s.tracer.Start(ctx, "registry.Deregister", trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()
	span.SetAttributes(
		attribute.String("meshplane.namespace", ns),
		attribute.String("meshplane.service", service),
		attribute.String("meshplane.instance_id", id),
	)
	rev, err := s.deregister(ctx, ns, service, id)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return rev, err
}

func (s *Store) deregister(ctx context.Context, ns, service, id string) (int64, error) {
	ns, err := ValidateRef(ns, service, id)
	if err != nil {
		return 0, err
	}
	key := s.keys.instance(ns, service, id)
	for range maxTxnAttempts {
		octx, cancel := s.opCtx(ctx)
		get, err := s.cli.Get(octx, key)
		if err != nil {
			cancel()
			return 0, s.etcdErr(ctx, "deregister", err)
		}
		if len(get.Kvs) == 0 {
			cancel()
			return 0, fmt.Errorf("registry: deregister %s: %w", key, ErrNotFound)
		}
		kv := get.Kvs[0]
		txn, err := s.cli.Txn(octx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(key)).
			Commit()
		cancel()
		if err != nil {
			return 0, s.etcdErr(ctx, "deregister", err)
		}
		if !txn.Succeeded {
			continue
		}
		if kv.Lease != 0 {
			s.revokeQuietly(ctx, clientv3.LeaseID(kv.Lease))
		}
		return txn.Header.Revision, nil
	}
	return 0, fmt.Errorf("registry: deregister %s: %w", key, ErrConflict)
}

// Services returns the services of namespace ns (all when empty), sorted,
// with their instances, and the revision they reflect. Once the store is
// Ready they come from the watch cache; before, from etcd.
func (s *Store) Services(ctx context.Context, ns string) ([]Service, int64, error) {
	snap, err := s.read(ctx, ns, "")
	if err != nil {
		return nil, 0, err
	}
	out := make([]Service, 0, len(snap.Services))
	for _, svc := range snap.Services {
		if ns == "" || svc.Namespace == ns {
			out = append(out, svc)
		}
	}
	return out, snap.Revision, nil
}

// Service returns one service with its instances; ErrNotFound when it has
// no instance. The namespace defaults to "default".
func (s *Store) Service(ctx context.Context, ns, name string) (Service, int64, error) {
	if ns == "" {
		ns = DefaultNamespace
	}
	if err := ValidateScope(ns, name); err != nil {
		return Service{}, 0, err
	}
	if name == "" {
		return Service{}, 0, &ValidationError{Violations: []FieldViolation{{Field: "name", Description: "required"}}}
	}
	snap, err := s.read(ctx, ns, name)
	if err != nil {
		return Service{}, 0, err
	}
	for _, svc := range snap.Services {
		if svc.Namespace == ns && svc.Name == name {
			return svc, snap.Revision, nil
		}
	}
	return Service{}, snap.Revision, fmt.Errorf("registry: service %s.%s: %w", name, ns, ErrNotFound)
}

// read returns a snapshot covering the scope, from the cache when ready.
func (s *Store) read(ctx context.Context, ns, service string) (Snapshot, error) {
	if s.Ready() {
		return s.Snapshot(), nil
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, s.keys.scope(ns, service), clientv3.WithPrefix())
	if err != nil {
		return Snapshot{}, s.etcdErr(ctx, "list", err)
	}
	instances := make([]Instance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		in, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision)
		if err != nil {
			continue
		}
		instances = append(instances, in)
	}
	return BuildSnapshot(resp.Header.Revision, instances), nil
}

// decode parses an instance value and checks it against its key, so a value
// written by hand under the wrong key cannot impersonate another instance.
func (s *Store) decode(key string, value []byte, modRev int64) (Instance, error) {
	ns, svc, id, err := s.keys.parse(key)
	if err == nil {
		var in Instance
		if err = json.Unmarshal(value, &in); err == nil {
			if in.Namespace != ns || in.Service != svc || in.ID != id {
				err = fmt.Errorf("registry: value of %s names %s/%s/%s", key, in.Namespace, in.Service, in.ID)
			} else {
				in.ModRevision = modRev
				return in, nil
			}
		} else {
			err = fmt.Errorf("registry: decode %s: %w", key, err)
		}
	}
	s.metrics.etcdErrors.WithLabelValues("decode").Inc()
	s.logger.Warn("ignoring malformed registry entry", "key", key, "err", err)
	return Instance{}, err
}
