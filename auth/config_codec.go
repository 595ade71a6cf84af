package auth

import (
	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/internal/conf"
)

// The configuration types of this package read and write YAML and JSON as every config of
// the module does: camelCase keys, durations as strings such as "250ms" (a bare number is
// refused), unknown and repeated keys refused with the path of the field.

// UnmarshalJSON reads s strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (s *ServerTLSConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("auth", b, s) }

// UnmarshalYAML reads s strictly from YAML, as UnmarshalJSON.
func (s *ServerTLSConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("auth", n, s) }

// MarshalJSON writes s with durations as strings, so that it reads back.
func (s ServerTLSConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(s) }

// MarshalYAML writes s with durations as strings, so that it reads back.
func (s ServerTLSConfig) MarshalYAML() (any, error) { return conf.Node(s) }

// UnmarshalJSON reads c strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (c *ClientTLSConfig) UnmarshalJSON(b []byte) error { return conf.JSONInto("auth", b, c) }

// UnmarshalYAML reads c strictly from YAML, as UnmarshalJSON.
func (c *ClientTLSConfig) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("auth", n, c) }

// MarshalJSON writes c with durations as strings, so that it reads back.
func (c ClientTLSConfig) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(c) }

// MarshalYAML writes c with durations as strings, so that it reads back.
func (c ClientTLSConfig) MarshalYAML() (any, error) { return conf.Node(c) }

// UnmarshalJSON reads i strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (i *Issuer) UnmarshalJSON(b []byte) error { return conf.JSONInto("auth", b, i) }

// UnmarshalYAML reads i strictly from YAML, as UnmarshalJSON.
func (i *Issuer) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("auth", n, i) }

// MarshalJSON writes i with durations as strings, so that it reads back.
func (i Issuer) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(i) }

// MarshalYAML writes i with durations as strings, so that it reads back.
func (i Issuer) MarshalYAML() (any, error) { return conf.Node(i) }

// UnmarshalJSON reads r strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (r *Refresh) UnmarshalJSON(b []byte) error { return conf.JSONInto("auth", b, r) }

// UnmarshalYAML reads r strictly from YAML, as UnmarshalJSON.
func (r *Refresh) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("auth", n, r) }

// MarshalJSON writes r with durations as strings, so that it reads back.
func (r Refresh) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(r) }

// MarshalYAML writes r with durations as strings, so that it reads back.
func (r Refresh) MarshalYAML() (any, error) { return conf.Node(r) }

// UnmarshalJSON reads p strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (p *PeerPolicy) UnmarshalJSON(b []byte) error { return conf.JSONInto("auth", b, p) }

// UnmarshalYAML reads p strictly from YAML, as UnmarshalJSON.
func (p *PeerPolicy) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("auth", n, p) }

// MarshalJSON writes p with durations as strings, so that it reads back.
func (p PeerPolicy) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(p) }

// MarshalYAML writes p with durations as strings, so that it reads back.
func (p PeerPolicy) MarshalYAML() (any, error) { return conf.Node(p) }

// UnmarshalJSON reads t strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (t *TokenSource) UnmarshalJSON(b []byte) error { return conf.JSONInto("auth", b, t) }

// UnmarshalYAML reads t strictly from YAML, as UnmarshalJSON.
func (t *TokenSource) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("auth", n, t) }

// MarshalJSON writes t with durations as strings, so that it reads back.
func (t TokenSource) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(t) }

// MarshalYAML writes t with durations as strings, so that it reads back.
func (t TokenSource) MarshalYAML() (any, error) { return conf.Node(t) }

// UnmarshalJSON reads r strictly from JSON: camelCase keys, durations as strings such as
// "250ms", unknown fields refused. It does not validate the values.
func (r *Rule) UnmarshalJSON(b []byte) error { return conf.JSONInto("auth", b, r) }

// UnmarshalYAML reads r strictly from YAML, as UnmarshalJSON.
func (r *Rule) UnmarshalYAML(n *yaml.Node) error { return conf.YAMLInto("auth", n, r) }

// MarshalJSON writes r with durations as strings, so that it reads back.
func (r Rule) MarshalJSON() ([]byte, error) { return conf.MarshalJSON(r) }

// MarshalYAML writes r with durations as strings, so that it reads back.
func (r Rule) MarshalYAML() (any, error) { return conf.Node(r) }
