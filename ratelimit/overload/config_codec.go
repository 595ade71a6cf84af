package overload

import (
	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/internal/conf"
)

// The configuration types of this package read and write YAML and JSON as every config of
// the module does: camelCase keys, durations as strings such as "250ms" (a bare number is
// refused), unknown and repeated keys refused with the path of the field.

// UnmarshalJSON reads a strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (a *AdaptiveConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("overload", b, a) }

// UnmarshalYAML reads a strictly from YAML, as UnmarshalJSON.
func (a *AdaptiveConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("overload", n, a) }

// MarshalJSON writes a with durations as strings, so that it reads back.
func (a AdaptiveConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(a) }

// MarshalYAML writes a with durations as strings, so that it reads back.
func (a AdaptiveConfig) MarshalYAML() (any, error) { return conf.Node(a) }

// UnmarshalJSON reads t strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (t *ThrottlerConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("overload", b, t) }

// UnmarshalYAML reads t strictly from YAML, as UnmarshalJSON.
func (t *ThrottlerConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("overload", n, t) }

// MarshalJSON writes t with durations as strings, so that it reads back.
func (t ThrottlerConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(t) }

// MarshalYAML writes t with durations as strings, so that it reads back.
func (t ThrottlerConfig) MarshalYAML() (any, error) { return conf.Node(t) }
