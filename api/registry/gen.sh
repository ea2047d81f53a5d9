#!/usr/bin/env bash
# Regenerates the Go code of the .proto files given as arguments (paths
# relative to the module root). Run through `go generate ./api/...`.
#
# Needs protoc (Debian/Ubuntu: apt-get install protobuf-compiler). The Go
# plugins are installed at pinned versions into a temporary GOBIN, so the
# output does not depend on what happens to be on PATH.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1
MODULE=github.com/meshplane/meshplane

root=$(cd "$(dirname "$(go env GOMOD)")" && pwd)
command -v protoc >/dev/null || { echo "gen.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN="$bin" GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$bin" GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"

cd "$root"
PATH="$bin:$PATH" protoc -I "$root" \
	--go_out="$root" --go_opt=module="$MODULE" \
	--go-grpc_out="$root" --go-grpc_opt=module="$MODULE" \
	"$@"
