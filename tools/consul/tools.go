//go:build tools

// Package tools pins the Consul agent that the integration tests run.
// Consul v1.14.11 is the last release under the MPL-2.0; do not upgrade it.
package tools

import _ "github.com/hashicorp/consul"
