// Package registry is Meshplane's service registry: the service/instance
// model, the etcd store that keeps instances bound to leases (watch with
// resume, re-list after compaction), and the gRPC Registry service. It feeds
// xds with immutable Snapshots.
package registry
