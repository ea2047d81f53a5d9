// Package registryv1 is the generated Go code of the meshplane.registry.v1
// gRPC API (registry.proto): the Registry service that workloads register
// their instances with. Regenerate with `go generate ./api/...`.
package registryv1
