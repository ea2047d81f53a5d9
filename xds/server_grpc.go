package xds

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// GRPCServerOptions are grpc.Server options sized for many long-lived xDS
// streams (the target is 10,000 connected data planes at ≤ 20 KiB each).
// The same grpc.Server may carry the registry and certificate services; the
// numbers suit them too.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Idle proxies: ping after 30 s without traffic, drop after 10 s
		// without an answer, so a dead proxy's stream and watches are freed
		// within a minute instead of at TCP's hours-long timeout.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Accept client pings every 10 s or more (Envoy's and gRPC's usual
		// keepalives are 10–30 s), even with no active RPC, instead of
		// answering with GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// A data plane needs one ADS stream, plus a few for registration,
		// certificates and health; 64 bounds what one connection can hold.
		grpc.MaxConcurrentStreams(64),
		// grpc-go's default 32 KiB read and 32 KiB write buffer per
		// connection would be 640 MiB for 10,000 proxies. Requests (ACKs,
		// subscriptions) are small: 4 KiB reads suffice; larger messages are
		// read through. Writes go through a 16 KiB buffer that, with
		// SharedWriteBuffer, is taken from a pool only while a write is being
		// flushed and returned after, so idle connections hold none.
		grpc.ReadBufferSize(4 << 10),
		grpc.WriteBufferSize(16 << 10),
		grpc.SharedWriteBuffer(true),
		// Fixed HTTP/2 windows (64 KiB per stream, the protocol's default,
		// 256 KiB per connection) turn off BDP estimation, which can grow a
		// busy connection's window — and what a client may make us buffer —
		// to megabytes. Inbound xDS traffic is small; the push direction
		// uses the client's windows, not these.
		grpc.InitialWindowSize(64 << 10),
		grpc.InitialConnWindowSize(256 << 10),
		// A full Envoy subscription state (delta initial_resource_versions
		// for every cluster and listener) is below 4 MiB; larger requests
		// are refused.
		grpc.MaxRecvMsgSize(4 << 20),
	}
}
