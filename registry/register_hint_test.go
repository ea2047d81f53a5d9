package registry

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshplane/meshplane/internal/etcdtest"
)

// TestRegisterWithStaleCacheHint checks that Register is right whatever the
// watch cache believes about the key: the cache is the write's first guess,
// and etcd's compare-and-swap must catch every wrong one.
func TestRegisterWithStaleCacheHint(t *testing.T) {
	const ttl = 15
	type setup struct {
		exists    bool  // the key exists in etcd, on a live lease with TTL ttl
		cached    bool  // the cache has an entry for the key
		cacheTTL  int64 // the TTL the cached entry says
		deadLease bool  // the cached entry names a lease that no longer exists
		staleRev  bool  // the cached entry's ModRevision is older than etcd's
		// (an entry at the key's current revision is exactly what etcd holds,
		// so a wrong lease or TTL comes with an older revision)
	}
	tests := map[string]struct {
		setup       setup
		wantCreated bool
		wantLease   string // "same": the key keeps its lease; "new": another one
	}{
		"absent, cache agrees":                {setup: setup{}, wantCreated: true, wantLease: "new"},
		"absent, cache lags a delete":         {setup: setup{cached: true, cacheTTL: ttl, deadLease: true}, wantCreated: true, wantLease: "new"},
		"exists, cache lags its creation":     {setup: setup{exists: true}, wantLease: "same"},
		"exists, cache agrees":                {setup: setup{exists: true, cached: true, cacheTTL: ttl}, wantLease: "same"},
		"exists, cache has an older value":    {setup: setup{exists: true, cached: true, cacheTTL: ttl, staleRev: true}, wantLease: "same"},
		"exists, cache has an older TTL":      {setup: setup{exists: true, cached: true, cacheTTL: 99, staleRev: true}, wantLease: "same"},
		"exists, cache has an older lease":    {setup: setup{exists: true, cached: true, cacheTTL: ttl, deadLease: true, staleRev: true}, wantLease: "same"},
		"exists, cache has older lease & TTL": {setup: setup{exists: true, cached: true, cacheTTL: 99, deadLease: true, staleRev: true}, wantLease: "same"},
	}
	cluster := etcdtest.Start(t)
	cli := cluster.Client()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := NewStore(cli, StoreOptions{Prefix: "/" + t.Name() + "/"})
			if err != nil {
				t.Fatal(err)
			}
			in := Instance{Service: "svc", Namespace: "default", Address: "10.0.0.1", ID: "i-1", TTLSeconds: ttl,
				Ports: []Port{{Name: "grpc", Port: 8080, Protocol: ProtocolGRPC}}}
			key := s.keys.instance(in.Namespace, in.Service, in.ID)
			var lease clientv3.LeaseID
			var modRev int64 = 1
			if tc.setup.exists {
				res, err := s.Register(ctx, in) // cache not ready: a plain write
				if err != nil {
					t.Fatal(err)
				}
				get, err := cli.Get(ctx, key)
				if err != nil || len(get.Kvs) != 1 {
					t.Fatalf("Get = %v, %v", get, err)
				}
				lease, modRev = clientv3.LeaseID(get.Kvs[0].Lease), res.Revision
			}
			hint := entry{inst: in, lease: lease}
			hint.inst.TTLSeconds = tc.setup.cacheTTL
			hint.inst.ModRevision = modRev
			if tc.setup.staleRev {
				hint.inst.ModRevision = modRev - 1
			}
			if tc.setup.deadLease {
				g, err := cli.Grant(ctx, ttl)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cli.Revoke(ctx, g.ID); err != nil {
					t.Fatal(err)
				}
				hint.lease = g.ID
			}
			// Pretend the watch cache is up and believes the hint.
			s.mu.Lock()
			s.ready = true
			if tc.setup.cached {
				s.entries[key] = hint
			}
			s.mu.Unlock()

			in.Weight = 7
			res, err := s.Register(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if res.Created != tc.wantCreated {
				t.Errorf("Created = %v, want %v", res.Created, tc.wantCreated)
			}
			get, err := cli.Get(ctx, key)
			if err != nil || len(get.Kvs) != 1 {
				t.Fatalf("Get = %v, %v", get, err)
			}
			got, err := s.decode(key, get.Kvs[0].Value, get.Kvs[0].ModRevision)
			if err != nil || got.Weight != 7 || get.Kvs[0].ModRevision != res.Revision {
				t.Errorf("stored %+v (%v) at revision %d, want weight 7 at %d", got, err, get.Kvs[0].ModRevision, res.Revision)
			}
			gotLease := clientv3.LeaseID(get.Kvs[0].Lease)
			if (tc.wantLease == "same") != (gotLease == lease) {
				t.Errorf("key on lease %x (was %x), want the %s lease", gotLease, lease, tc.wantLease)
			}
			ttlResp, err := cli.TimeToLive(ctx, gotLease, clientv3.WithAttachedKeys())
			if err != nil || ttlResp.TTL <= 0 || ttlResp.GrantedTTL != ttl || len(ttlResp.Keys) != 1 {
				t.Errorf("lease of the key: %+v, %v; want live, TTL %d, holding only the key", ttlResp, err, ttl)
			}
			// Leases granted for failed attempts were revoked, and the key is
			// only on its own: each instance has one lease.
			leases, err := cli.Leases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range leases.Leases {
				tl, err := cli.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
				if err != nil {
					t.Fatal(err)
				}
				if tl.TTL > 0 && len(tl.Keys) == 0 {
					t.Errorf("live lease %x holds no key", l.ID)
				}
			}
			if _, err := cli.Revoke(ctx, gotLease); err != nil {
				t.Fatal(err)
			}
		})
	}
}
