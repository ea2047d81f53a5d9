// Package loadgen simulates many xDS data planes against one ADS server, for
// the xDS scale benchmark (bench/xds/cmd/xdsbench drives it through the
// bench/xds/cmd/xdsload process).
//
// Each simulated client has its own gRPC connection and one SotW
// StreamAggregatedResources stream. Scoped clients subscribe by name to CDS
// and EDS for a few clusters, like a proxyless gRPC client or a scoped
// sidecar; wildcard clients subscribe to CDS with no names and then to EDS for
// every cluster, like an Envoy sidecar. Every response is ACKed. Responses are
// scanned on the wire format instead of being decoded into Envoy types, so
// that ten thousand clients stay cheap next to the server they measure.
//
// The generator reports, as JSON lines, when every client has its initial
// configuration and, for each change of a marker endpoint's weight, the wall
// clock time at which each client received and ACKed it.
package loadgen
