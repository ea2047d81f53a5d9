package registryv1

// Regenerate registry.pb.go and registry_grpc.pb.go with `go generate ./api/...`.
//go:generate bash ../gen.sh api/registry/v1/registry.proto
