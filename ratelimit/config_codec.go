package ratelimit

import (
	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/internal/conf"
)

// The configuration types of this package read and write YAML and JSON as every config of
// the module does: camelCase keys, durations as strings such as "250ms" (a bare number is
// refused), unknown and repeated keys refused with the path of the field.

// UnmarshalJSON reads k strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (k *KeyedConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("ratelimit", b, k) }

// UnmarshalYAML reads k strictly from YAML, as UnmarshalJSON.
func (k *KeyedConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("ratelimit", n, k) }

// MarshalJSON writes k with durations as strings, so that it reads back.
func (k KeyedConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(k) }

// MarshalYAML writes k with durations as strings, so that it reads back.
func (k KeyedConfig) MarshalYAML() (any, error) { return conf.Node(k) }

// UnmarshalJSON reads q strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (q *Quota) UnmarshalJSON(b []byte) error { return conf.JSONInto("ratelimit", b, q) }

// UnmarshalYAML reads q strictly from YAML, as UnmarshalJSON.
func (q *Quota) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("ratelimit", n, q) }

// MarshalJSON writes q with durations as strings, so that it reads back.
func (q Quota) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(q) }

// MarshalYAML writes q with durations as strings, so that it reads back.
func (q Quota) MarshalYAML() (any, error) { return conf.Node(q) }

// UnmarshalJSON reads c strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (c *ClientIPConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("ratelimit", b, c) }

// UnmarshalYAML reads c strictly from YAML, as UnmarshalJSON.
func (c *ClientIPConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("ratelimit", n, c) }

// MarshalJSON writes c with durations as strings, so that it reads back.
func (c ClientIPConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(c) }

// MarshalYAML writes c with durations as strings, so that it reads back.
func (c ClientIPConfig) MarshalYAML() (any, error) { return conf.Node(c) }
