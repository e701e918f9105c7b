package main

import "github.com/triage-ml/triage/gateway"

// gatewayOpenAPI returns the gateway's OpenAPI document, exactly the bytes
// GET /openapi.json serves.
func gatewayOpenAPI() ([]byte, error) { return gateway.OpenAPIJSON() }
