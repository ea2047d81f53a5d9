package xds

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ProxyStatus is one connected xDS stream as GET /api/v1/proxies shows it.
type ProxyStatus struct {
	NodeID    string   `json:"nodeId"`
	Kind      NodeKind `json:"kind"`
	UserAgent string   `json:"userAgent"`
	// Address is the peer's address (ip:port).
	Address        string    `json:"address"`
	ConnectedSince time.Time `json:"connectedSince"`
	// Delta is true for an incremental (delta) xDS stream.
	Delta bool `json:"delta"`
	// Types holds, per type URL, what the proxy acknowledged.
	Types map[string]TypeStatus `json:"types"`
	// LastNACK is the last response the proxy rejected, if any.
	LastNACK *NACKStatus `json:"lastNack,omitempty"`
	// SubscribedResources is the number of resources subscribed by name,
	// over all types (wildcard subscriptions count as zero; on delta streams
	// it is counted from subscribe/unsubscribe lists, so a name subscribed
	// twice counts twice).
	SubscribedResources int `json:"subscribedResources"`
}

// TypeStatus is a proxy's state for one resource type.
type TypeStatus struct {
	// AckedVersion is the version of the last response the proxy
	// acknowledged (SotW version_info, delta system_version_info): a content
	// hash, equal on every replica for equal content.
	AckedVersion string `json:"ackedVersion"`
	AckedNonce   string `json:"ackedNonce"`
	Subscribed   int    `json:"subscribed"`
	Wildcard     bool   `json:"wildcard"`
}

// NACKStatus is a rejected response.
type NACKStatus struct {
	TypeURL     string    `json:"typeUrl"`
	Version     string    `json:"version"`
	Nonce       string    `json:"nonce"`
	ErrorDetail string    `json:"errorDetail"`
	Time        time.Time `json:"time"`
}

// streamKey identifies a stream: SotW and delta streams are numbered apart.
type streamKey struct {
	delta bool
	id    int64
}

// streamState is what the server tracks per stream: a few hundred bytes.
// Callbacks of one stream run on that stream's goroutine; mu guards against
// Proxies readers.
type streamState struct {
	mu      sync.Mutex
	delta   bool
	address string
	since   time.Time
	info    NodeInfo
	hasNode bool
	types   map[string]*typeState
	nack    *NACKStatus
}

// typeState is one stream's state for one type URL.
type typeState struct {
	acked, ackedNonce string
	sentNonce         string
	sentVersion       string
	pushedAt          int64 // publish time of the change the last response carried; 0 if none
	lastRequest       int64 // unix nanos
	nackNonce         string
	subscribed        int
	wildcard          bool
}

// callbacks is the Server seen as go-control-plane's stream callbacks, kept
// off the Server's exported API. Only the delta ones run: SotW streams are
// served by ads.go, which calls openStream, requestState, responseState and
// closeStream itself; the SotW callbacks only complete the interface.
type callbacks Server

var _ serverv3.Callbacks = (*callbacks)(nil)

// Proxies lists the open xDS streams, sorted by node ID and connection time.
func (s *Server) Proxies() []ProxyStatus {
	s.streamsMu.Lock()
	states := make([]*streamState, 0, len(s.streams))
	for _, st := range s.streams {
		states = append(states, st)
	}
	s.streamsMu.Unlock()
	out := make([]ProxyStatus, 0, len(states))
	for _, st := range states {
		st.mu.Lock()
		p := ProxyStatus{
			NodeID: st.info.ID, Kind: st.info.Kind, UserAgent: st.info.UserAgent,
			Address: st.address, ConnectedSince: st.since, Delta: st.delta,
			Types: make(map[string]TypeStatus, len(st.types)),
		}
		if st.nack != nil {
			n := *st.nack
			p.LastNACK = &n
		}
		for url, ts := range st.types {
			p.Types[url] = TypeStatus{AckedVersion: ts.acked, AckedNonce: ts.ackedNonce, Subscribed: ts.subscribed, Wildcard: ts.wildcard}
			p.SubscribedResources += ts.subscribed
		}
		st.mu.Unlock()
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b ProxyStatus) int {
		return cmp.Or(cmp.Compare(a.NodeID, b.NodeID), a.ConnectedSince.Compare(b.ConnectedSince), cmp.Compare(a.Address, b.Address))
	})
	return out
}

func (s *Server) openStream(ctx context.Context, k streamKey) *streamState {
	st := &streamState{delta: k.delta, since: time.Now(), types: map[string]*typeState{}}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		st.address = p.Addr.String()
	}
	s.streamsMu.Lock()
	s.streams[k] = st
	s.streamsMu.Unlock()
	return st
}

func (s *Server) closeStream(k streamKey) {
	s.streamsMu.Lock()
	st := s.streams[k]
	delete(s.streams, k)
	s.streamsMu.Unlock()
	if st == nil || !st.hasNode {
		return
	}
	s.metrics.connected.WithLabelValues(string(st.info.Kind)).Dec()
	if st.info.Kind == KindEnvoy {
		s.detachSidecar(st.info.ID)
	}
}

func (s *Server) stream(k streamKey) *streamState {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	return s.streams[k]
}

// request records a request: the node on its first, then ACK or NACK of the
// response it answers. held is, on a stream's first request for a type
// (nonce ""), the version the proxy says it already holds (SotW
// version_info, or the state version of a delta request's
// initial_resource_versions); "" if none.
func (s *Server) request(k streamKey, node *corev3.Node, typeURL, nonce, held string, errDetail *rpcstatus.Status, subscribed, unsubscribed []string) error {
	st := s.stream(k)
	if st == nil {
		return nil
	}
	return s.requestState(st, k.delta, node, typeURL, nonce, held, errDetail, subscribed, unsubscribed)
}

// requestState is request on a known stream.
func (s *Server) requestState(st *streamState, delta bool, node *corev3.Node, typeURL, nonce, held string, errDetail *rpcstatus.Status, subscribed, unsubscribed []string) error {
	now := time.Now()
	st.mu.Lock()
	if !st.hasNode && node != nil {
		info, err := ParseNode(node)
		if err != nil {
			st.mu.Unlock()
			s.log.Warn("xds: rejecting stream", "node", node.GetId(), "address", st.address, "err", err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		st.info, st.hasNode = info, true
		st.mu.Unlock()
		s.metrics.connected.WithLabelValues(string(info.Kind)).Inc()
		if info.Kind == KindEnvoy {
			// Before the first watch is created, so the first response
			// already carries the sidecar's own resources.
			s.attachSidecar(info.ID, info.Sidecar)
		}
		st.mu.Lock()
	}
	defer st.mu.Unlock()
	ts := st.types[typeURL]
	first := ts == nil
	if first {
		ts = &typeState{}
		st.types[typeURL] = ts
	}
	ts.lastRequest = now.UnixNano()
	if delta {
		for _, n := range subscribed {
			if n == "*" {
				ts.wildcard = true
			} else {
				ts.subscribed++
			}
		}
		for _, n := range unsubscribed {
			if n == "*" {
				ts.wildcard = false
			} else if ts.subscribed > 0 {
				ts.subscribed--
			}
		}
		if first && len(subscribed) == 0 {
			ts.wildcard = true
		}
	} else {
		ts.subscribed = len(subscribed)
		if first && len(subscribed) == 0 {
			ts.wildcard = true
		} else if len(subscribed) > 0 {
			ts.wildcard = slices.Contains(subscribed, "*")
			if ts.wildcard {
				ts.subscribed--
			}
		}
	}
	if st.info.Kind == KindEnvoy && (typeURL == resourcev3.ListenerType || typeURL == resourcev3.ClusterType) {
		ts.wildcard = true // as the cache treats it, whatever the request says
	}
	if nonce == "" {
		if held != "" && ts.acked == "" {
			// A proxy resuming after a reconnect (control-plane restart,
			// another replica) holds what it acked there. When that is
			// current, nothing is sent and nothing would be acked here; if
			// not, the response it then acks replaces this.
			ts.acked, ts.ackedNonce = held, ""
		}
		return nil
	}
	if errDetail != nil {
		s.nackLocked(st, ts, typeURL, nonce, errDetail, now)
		return nil
	}
	if nonce == ts.sentNonce {
		ts.acked, ts.ackedNonce = ts.sentVersion, nonce
		if ts.pushedAt > 0 {
			d := now.Sub(time.Unix(0, ts.pushedAt))
			s.metrics.convergence.WithLabelValues(typeLabel(typeURL)).Observe(d.Seconds())
			ts.pushedAt = 0
		}
	}
	return nil
}

// response records a response about to be sent.
func (s *Server) response(k streamKey, typeURL, nonce, version string) {
	s.responseState(s.stream(k), typeURL, nonce, version)
}

// responseState is response on a known stream (nil: closed).
func (s *Server) responseState(st *streamState, typeURL, nonce, version string) {
	s.metrics.pushes.WithLabelValues(typeLabel(typeURL)).Inc()
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	ts := st.types[typeURL]
	if ts == nil {
		ts = &typeState{}
		st.types[typeURL] = ts
	}
	ts.sentNonce, ts.sentVersion = nonce, version
	// A response is a push of a published change when the change came after
	// the request that opened the watch; a reply to a request is not.
	ts.pushedAt = 0
	if c := s.caches.forType(typeURL, st.info.Kind); c != nil {
		if changed := c.lastChange.Load(); changed > ts.lastRequest {
			ts.pushedAt = changed
		}
	}
}

// OnStreamOpen implements serverv3.Callbacks.
func (c *callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	(*Server)(c).openStream(ctx, streamKey{id: id})
	return nil
}

// OnStreamClosed implements serverv3.Callbacks.
func (c *callbacks) OnStreamClosed(id int64, _ *corev3.Node) {
	(*Server)(c).closeStream(streamKey{id: id})
}

// OnStreamRequest implements serverv3.Callbacks.
func (c *callbacks) OnStreamRequest(id int64, r *discoveryv3.DiscoveryRequest) error {
	return (*Server)(c).request(streamKey{id: id}, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetVersionInfo(),
		r.GetErrorDetail(), r.GetResourceNames(), nil)
}

// OnStreamResponse implements serverv3.Callbacks.
func (c *callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, r *discoveryv3.DiscoveryResponse) {
	(*Server)(c).response(streamKey{id: id}, r.GetTypeUrl(), r.GetNonce(), r.GetVersionInfo())
}

// OnDeltaStreamOpen implements serverv3.Callbacks.
func (c *callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	(*Server)(c).openStream(ctx, streamKey{delta: true, id: id})
	return nil
}

// OnDeltaStreamClosed implements serverv3.Callbacks.
func (c *callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	(*Server)(c).closeStream(streamKey{delta: true, id: id})
}

// OnStreamDeltaRequest implements serverv3.Callbacks.
func (c *callbacks) OnStreamDeltaRequest(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
	held := ""
	if r.GetResponseNonce() == "" && len(r.GetInitialResourceVersions()) > 0 {
		// What the delta responses that brought them carried as
		// system_version_info.
		held = stateVersion(r.GetInitialResourceVersions())
	}
	return (*Server)(c).request(streamKey{delta: true, id: id}, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), held,
		r.GetErrorDetail(), r.GetResourceNamesSubscribe(), r.GetResourceNamesUnsubscribe())
}

// OnStreamDeltaResponse implements serverv3.Callbacks.
func (c *callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, r *discoveryv3.DeltaDiscoveryResponse) {
	(*Server)(c).response(streamKey{delta: true, id: id}, r.GetTypeUrl(), r.GetNonce(), r.GetSystemVersionInfo())
}

// OnFetchRequest implements serverv3.Callbacks; Fetch is not served.
func (c *callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "xds: fetch is not supported, use ADS")
}

// OnFetchResponse implements serverv3.Callbacks.
func (c *callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}
