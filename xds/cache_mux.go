package xds

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// sotwResponse is a SotW response whose resources are shared entries.
type sotwResponse struct {
	req      *cachev3.Request
	out      *discoveryv3.DiscoveryResponse
	returned map[string]string
}

var _ cachev3.Response = (*sotwResponse)(nil)

func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	return r.out, nil
}
func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)               { return r.out.GetVersionInfo(), nil }
func (r *sotwResponse) GetResponseVersion() string                { return r.out.GetVersionInfo() }
func (r *sotwResponse) GetReturnedResources() map[string]string   { return r.returned }
func (r *sotwResponse) GetContext() context.Context               { return context.Background() }

// deltaResponse is a delta response whose resources are shared entries.
type deltaResponse struct {
	req      *cachev3.DeltaRequest
	out      *discoveryv3.DeltaDiscoveryResponse
	returned map[string]string
}

var _ cachev3.DeltaResponse = (*deltaResponse)(nil)

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	return r.out, nil
}
func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error) {
	return r.out.GetSystemVersionInfo(), nil
}
func (r *deltaResponse) GetResponseVersion() string              { return r.out.GetSystemVersionInfo() }
func (r *deltaResponse) GetNextVersionMap() map[string]string    { return r.returned }
func (r *deltaResponse) GetReturnedResources() map[string]string { return r.returned }
func (r *deltaResponse) GetContext() context.Context             { return context.Background() }

// Cache keys of the MuxCache. Envoy and gRPC nodes get different LDS caches:
// Envoy must never see an api_listener, gRPC clients never need the Envoy
// listeners. Every other type is one cache for both kinds.
const (
	muxListenersGRPC  = "lds/grpc"
	muxListenersEnvoy = "lds/envoy"
	muxRoutes         = "rds"
	muxClusters       = "cds"
	muxEndpoints      = "eds"
	muxOther          = "other"
)

// caches is the set of type caches behind the MuxCache.
type caches struct {
	listenersGRPC  *typeCache
	listenersEnvoy *typeCache
	routes         *typeCache
	clusters       *typeCache
	endpoints      *typeCache
	other          *typeCache
	mux            *cachev3.MuxCache
}

func newCaches() *caches {
	c := &caches{
		listenersGRPC:  newTypeCache(resourcev3.ListenerType),
		listenersEnvoy: newTypeCache(resourcev3.ListenerType),
		routes:         newTypeCache(resourcev3.RouteType),
		clusters:       newTypeCache(resourcev3.ClusterType),
		endpoints:      newTypeCache(resourcev3.EndpointType),
		other:          newTypeCache(""),
	}
	c.listenersEnvoy.envoyWildcard = true
	c.clusters.envoyWildcard = true
	c.mux = &cachev3.MuxCache{
		Classify: func(r *cachev3.Request) string { return classify(r.GetTypeUrl(), r.GetNode()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string {
			return classify(r.GetTypeUrl(), r.GetNode())
		},
		Caches: map[string]cachev3.Cache{
			muxListenersGRPC:  c.listenersGRPC,
			muxListenersEnvoy: c.listenersEnvoy,
			muxRoutes:         c.routes,
			muxClusters:       c.clusters,
			muxEndpoints:      c.endpoints,
			muxOther:          c.other,
		},
	}
	return c
}

// all lists the caches with the metric label of their type, in publish
// order: endpoints and clusters before the routes and listeners that refer
// to them, so a new reference never arrives before its target.
func (c *caches) all() []*typeCache {
	return []*typeCache{c.endpoints, c.clusters, c.routes, c.listenersGRPC, c.listenersEnvoy}
}

// classify picks the MuxCache key of a request.
func classify(typeURL string, node *corev3.Node) string {
	return classifyKind(typeURL, nodeKind(node))
}

func classifyKind(typeURL string, kind NodeKind) string {
	switch typeURL {
	case resourcev3.ListenerType:
		if kind == KindEnvoy {
			return muxListenersEnvoy
		}
		return muxListenersGRPC
	case resourcev3.RouteType:
		return muxRoutes
	case resourcev3.ClusterType:
		return muxClusters
	case resourcev3.EndpointType:
		return muxEndpoints
	}
	return muxOther
}

// forType is the cache a node of this kind is served typeURL from.
func (c *caches) forType(typeURL string, kind NodeKind) *typeCache {
	switch classifyKind(typeURL, kind) {
	case muxListenersEnvoy:
		return c.listenersEnvoy
	case muxListenersGRPC:
		return c.listenersGRPC
	case muxRoutes:
		return c.routes
	case muxClusters:
		return c.clusters
	case muxEndpoints:
		return c.endpoints
	}
	return nil
}

// watchNode is the node ID whose layer a watch sees: only Envoy sidecars have
// layers, so a gRPC node never sees a sidecar's resources whatever its ID.
func watchNode(node *corev3.Node) string {
	if nodeKind(node) == KindEnvoy {
		return node.GetId()
	}
	return ""
}

func nowNanos() int64 { return time.Now().UnixNano() }
