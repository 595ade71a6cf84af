package balancer

import (
	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/internal/conf"
)

// The configuration types of this package read and write YAML and JSON as every config of
// the module does: camelCase keys, durations as strings such as "250ms" (a bare number is
// refused), unknown and repeated keys refused with the path of the field.

// UnmarshalJSON reads c strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (c *Config) UnmarshalJSON(b []byte) error { return conf.JSONInto("balancer", b, c) }

// UnmarshalYAML reads c strictly from YAML, as UnmarshalJSON.
func (c *Config) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("balancer", n, c) }

// MarshalJSON writes c with durations as strings, so that it reads back.
func (c Config) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(c) }

// MarshalYAML writes c with durations as strings, so that it reads back.
func (c Config) MarshalYAML() (any, error) { return conf.Node(c) }

// UnmarshalJSON reads z strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (z *ZoneConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("balancer", b, z) }

// UnmarshalYAML reads z strictly from YAML, as UnmarshalJSON.
func (z *ZoneConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("balancer", n, z) }

// MarshalJSON writes z with durations as strings, so that it reads back.
func (z ZoneConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(z) }

// MarshalYAML writes z with durations as strings, so that it reads back.
func (z ZoneConfig) MarshalYAML() (any, error) { return conf.Node(z) }

// UnmarshalJSON reads o strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (o *OutlierConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("balancer", b, o) }

// UnmarshalYAML reads o strictly from YAML, as UnmarshalJSON.
func (o *OutlierConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("balancer", n, o) }

// MarshalJSON writes o with durations as strings, so that it reads back.
func (o OutlierConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(o) }

// MarshalYAML writes o with durations as strings, so that it reads back.
func (o OutlierConfig) MarshalYAML() (any, error) { return conf.Node(o) }

// UnmarshalJSON reads s strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (s *SlowStartConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("balancer", b, s) }

// UnmarshalYAML reads s strictly from YAML, as UnmarshalJSON.
func (s *SlowStartConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("balancer", n, s) }

// MarshalJSON writes s with durations as strings, so that it reads back.
func (s SlowStartConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(s) }

// MarshalYAML writes s with durations as strings, so that it reads back.
func (s SlowStartConfig) MarshalYAML() (any, error) { return conf.Node(s) }

// UnmarshalJSON reads h strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (h *HealthCheck) UnmarshalJSON(b []byte) error { return conf.JSONInto("balancer", b, h) }

// UnmarshalYAML reads h strictly from YAML, as UnmarshalJSON.
func (h *HealthCheck) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("balancer", n, h) }

// MarshalJSON writes h with durations as strings, so that it reads back.
func (h HealthCheck) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(h) }

// MarshalYAML writes h with durations as strings, so that it reads back.
func (h HealthCheck) MarshalYAML() (any, error) { return conf.Node(h) }
