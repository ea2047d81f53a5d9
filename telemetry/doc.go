// Package telemetry receives OTLP traces from the mesh (gRPC on 4317, HTTP on 4318), aggregates them into a live
// service graph and RED span metrics exposed under the OpenTelemetry Collector's servicegraph and spanmetrics
// connector names, keeps a bounded store of recent traces queryable over /api/v1/traces, and can forward every
// received batch to an upstream OTLP backend. It also builds the control plane's own TracerProvider.
//
// The intake path decodes protobuf with a hand-written, allocation-free scanner (see decode.go) and hands batches
// to a single aggregation goroutine through a queue bounded in spans and bytes; when the queue is full senders get
// RESOURCE_EXHAUSTED (gRPC, with RetryInfo) or 429 (HTTP, with Retry-After), never unbounded memory.
package telemetry
