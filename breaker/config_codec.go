package breaker

import (
	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/internal/conf"
)

// The configuration types of this package read and write YAML and JSON as every config of
// the module does: camelCase keys, durations as strings such as "250ms" (a bare number is
// refused), unknown and repeated keys refused with the path of the field.

// UnmarshalJSON reads c strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (c *Config) UnmarshalJSON(b []byte) error { return conf.JSONInto("breaker", b, c) }

// UnmarshalYAML reads c strictly from YAML, as UnmarshalJSON.
func (c *Config) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("breaker", n, c) }

// MarshalJSON writes c with durations as strings, so that it reads back.
func (c Config) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(c) }

// MarshalYAML writes c with durations as strings, so that it reads back.
func (c Config) MarshalYAML() (any, error) { return conf.Node(c) }
