package middleware

import (
	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/internal/conf"
)

// The configuration types of this package read and write YAML and JSON as every config of
// the module does: camelCase keys, durations as strings such as "250ms" (a bare number is
// refused), unknown and repeated keys refused with the path of the field.

// UnmarshalJSON reads r strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (r *RetryPolicy) UnmarshalJSON(b []byte) error { return conf.JSONInto("middleware", b, r) }

// UnmarshalYAML reads r strictly from YAML, as UnmarshalJSON.
func (r *RetryPolicy) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("middleware", n, r) }

// MarshalJSON writes r with durations as strings, so that it reads back.
func (r RetryPolicy) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(r) }

// MarshalYAML writes r with durations as strings, so that it reads back.
func (r RetryPolicy) MarshalYAML() (any, error) { return conf.Node(r) }

// UnmarshalJSON reads h strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (h *HedgePolicy) UnmarshalJSON(b []byte) error { return conf.JSONInto("middleware", b, h) }

// UnmarshalYAML reads h strictly from YAML, as UnmarshalJSON.
func (h *HedgePolicy) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("middleware", n, h) }

// MarshalJSON writes h with durations as strings, so that it reads back.
func (h HedgePolicy) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(h) }

// MarshalYAML writes h with durations as strings, so that it reads back.
func (h HedgePolicy) MarshalYAML() (any, error) { return conf.Node(h) }
