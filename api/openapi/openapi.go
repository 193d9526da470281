// Package openapi holds the OpenAPI 2.0 document of hufu's JSON/HTTP API
// (hufu.swagger.json), generated from the protos by protoc-gen-openapiv2 (scripts/proto.sh;
// buf.gen.openapi.yaml) and committed; the appliance serves it at /openapi.json on the JSON
// listener.
package openapi

import _ "embed"

// Document is the committed OpenAPI document, byte for byte.
//
//go:embed hufu.swagger.json
var Document []byte
