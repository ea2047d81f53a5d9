// Package e2e holds end-to-end tests: the real control plane started
// in-process through app.Serve (embedded etcd, real gRPC and HTTP listeners on
// loopback), driven by real clients — grpc-go's xDS client and xDS-enabled
// servers, the registry client package, OTLP exporters and plain HTTP.
package e2e
