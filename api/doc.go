// Package api holds Meshplane's wire contracts: the gRPC .proto files with
// their generated Go code (in versioned subpackages) and the REST API's
// OpenAPI document, served at /api/v1/openapi.json.
package api

import _ "embed"

// OpenAPI is the REST API's OpenAPI 3.1 document.
//
//go:embed openapi.json
var OpenAPI []byte
