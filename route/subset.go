package route

import (
	"slices"
	"strings"

	"github.com/proxyless/proxyless/discovery"
)

// Subset selects endpoints of a service by their tags and metadata: an endpoint belongs to
// the subset when it carries every tag in Tags and every key/value pair in Meta. The zero
// value selects every endpoint.
type Subset struct {
	// Tags the endpoint must all carry, e.g. ["v2"].
	Tags []string `json:"tags,omitempty" yaml:"tags,omitempty"`
	// Meta pairs the endpoint must all carry, e.g. {version: v2}.
	Meta map[string]string `json:"meta,omitempty" yaml:"meta,omitempty"`
}

// IsZero reports whether s selects every endpoint.
func (s Subset) IsZero() bool { return len(s.Tags) == 0 && len(s.Meta) == 0 }

// Matches reports whether e belongs to the subset.
func (s Subset) Matches(e discovery.Endpoint) bool {
	for _, t := range s.Tags {
		if !e.HasTag(t) {
			return false
		}
	}
	for k, v := range s.Meta {
		if got, ok := e.Meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Filter returns the endpoints of eps that belong to the subset, in order. It returns eps
// itself when s is zero, and a new slice (possibly empty) otherwise; eps is not modified.
// Callers should filter once per endpoint-set change, not per request.
func (s Subset) Filter(eps []discovery.Endpoint) []discovery.Endpoint {
	if s.IsZero() {
		return eps
	}
	out := make([]discovery.Endpoint, 0, len(eps))
	for _, e := range eps {
		if s.Matches(e) {
			out = append(out, e)
		}
	}
	return out
}

// Key returns a canonical string for the subset ("" for the zero value), usable as a cache
// key for filtered endpoint sets: "tags=a,b;meta=k1=v1,k2=v2" with both parts sorted.
func (s Subset) Key() string {
	if s.IsZero() {
		return ""
	}
	var b strings.Builder
	if len(s.Tags) > 0 {
		tags := slices.Clone(s.Tags)
		slices.Sort(tags)
		tags = slices.Compact(tags)
		b.WriteString("tags=")
		b.WriteString(strings.Join(tags, ","))
	}
	if len(s.Meta) > 0 {
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString("meta=")
		for i, k := range sortedKeys(s.Meta) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(s.Meta[k])
		}
	}
	return b.String()
}

// Key returns a canonical string for the destination, "service" or "service|subset-key",
// usable as a cache key for its filtered endpoint set. It is precomputed for destinations in
// a compiled [Table], so calling it there does not allocate.
func (d *Destination) Key() string {
	if d.key != "" {
		return d.key
	}
	if sk := d.Subset.Key(); sk != "" {
		return d.Service + "|" + sk
	}
	return d.Service
}
