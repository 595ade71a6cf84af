package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// Endpoint is one instance of a service: an address to dial plus what the balancer needs to
// weigh and place it. Endpoints are values; a set handed out by a Watcher or a Cache must not
// be modified by its reader.
type Endpoint struct {
	Addr   string            // host:port
	Weight uint32            // relative share; 0 means 1
	Zone   string            // locality, e.g. "dc1/us-east-1a"; empty when unknown
	Tags   []string          // free-form labels, e.g. "v2", "canary"
	Meta   map[string]string // key/value labels, e.g. version=v2
}

// EffectiveWeight returns the endpoint's weight, with 0 read as 1.
func (e Endpoint) EffectiveWeight() uint32 {
	if e.Weight == 0 {
		return 1
	}
	return e.Weight
}

// HasTag reports whether the endpoint carries tag.
func (e Endpoint) HasTag(tag string) bool { return slices.Contains(e.Tags, tag) }

// Validate checks that Addr is host:port with a non-empty host that is an IP address or a
// plausible host name, and a port in 1..65535.
func (e Endpoint) Validate() error {
	host, port, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return fmt.Errorf("discovery: endpoint address %q: %w", e.Addr, err)
	}
	if err := ValidateHost(host); err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("discovery: endpoint address %q: port out of range", e.Addr)
	}
	return nil
}

// ValidateHost reports whether host is an IP address or a syntactically valid DNS name
// (RFC 1123 labels, at most 253 octets).
func ValidateHost(host string) error {
	if host == "" {
		return errors.New("discovery: empty host")
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if len(host) > 253 {
		return fmt.Errorf("discovery: host name too long (%d octets)", len(host))
	}
	label := 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == '.':
			if label == 0 {
				return fmt.Errorf("discovery: host %q has an empty label", host)
			}
			label = 0
			continue
		case c == '-':
			if label == 0 || i+1 == len(host) || host[i+1] == '.' {
				return fmt.Errorf("discovery: host %q has a label that starts or ends with '-'", host)
			}
		case c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9'):
		default:
			return fmt.Errorf("discovery: host %q has an invalid character", host)
		}
		label++
		if label > 63 {
			return fmt.Errorf("discovery: host %q has a label over 63 octets", host)
		}
	}
	return nil
}

// Resolver follows services by name.
type Resolver interface {
	// Watch follows one service. Its Watcher yields the current set on the first call to Next
	// and a fresh set whenever it changes. The ctx bounds only the setup, not the watch; the
	// caller must Close the Watcher.
	Watch(ctx context.Context, service string) (Watcher, error)
}

// Watcher follows one service. Next and Close may be called from different goroutines, but
// Next must not be called concurrently with itself.
type Watcher interface {
	// Next blocks until the endpoint set differs from the one it last returned (the first call
	// returns the current set as soon as one is known), ctx is done, or the watcher is closed.
	// The returned slice is owned by the caller.
	Next(ctx context.Context) ([]Endpoint, error)
	// Close stops the watch and waits for its goroutines. It is idempotent.
	Close() error
}

// Status describes how fresh a watcher's set is.
type Status struct {
	// Stale is true while the watcher serves its last good set because its source is down,
	// erroring, or answered an empty set it does not yet believe.
	Stale bool
	// StaleSince is when the watcher last became stale; zero when it is not stale.
	StaleSince time.Time
	// LastUpdate is when the source last answered successfully.
	LastUpdate time.Time
	// LastError is the most recent error from the source, if the watcher is stale because of one.
	LastError error
}

// StatusReporter is implemented by watchers that can say whether their set is stale.
type StatusReporter interface {
	Status() Status
}

// ErrUnknownService is returned by resolvers that know their services up front (such as
// [Static]) for a name they do not know. Callers that route by host name treat it as
// "not a service" and pass the request through.
var ErrUnknownService = errors.New("discovery: unknown service")

// Knower is implemented by resolvers that know, without the network, every service they serve
// (as [Static] does). Knows reports whether the resolver serves service: a false answer means a
// Watch of it fails with [ErrUnknownService]. Middleware asks it when routes load, so that a
// route to a service the resolver does not know is refused then rather than failing each
// request. Resolvers that learn their services from a network source (Consul, DNS) do not
// implement it.
type Knower interface {
	Knows(service string) bool
}

// CheckKnown returns a check that refuses, with an error wrapping [ErrUnknownService], a
// service k does not know: for route.WithServiceCheck, so that a route table (and every
// reload of it) naming such a service is refused when it loads.
func CheckKnown(k Knower) func(service string) error {
	return func(service string) error {
		if !k.Knows(service) {
			return fmt.Errorf("%w: %q", ErrUnknownService, service)
		}
		return nil
	}
}

// ErrClosed is returned by Next after the watcher (or cache) is closed.
var ErrClosed = errors.New("discovery: watcher closed")

// Equal reports whether two endpoint sets hold the same endpoints in the same order.
func Equal(a, b []Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y Endpoint) bool {
		if x.Addr != y.Addr || x.Weight != y.Weight || x.Zone != y.Zone || !slices.Equal(x.Tags, y.Tags) || len(x.Meta) != len(y.Meta) {
			return false
		}
		for k, v := range x.Meta {
			if w, ok := y.Meta[k]; !ok || w != v {
				return false
			}
		}
		return true
	})
}

// Clone returns a deep copy of eps.
func Clone(eps []Endpoint) []Endpoint {
	if eps == nil {
		return nil
	}
	out := make([]Endpoint, len(eps))
	for i, e := range eps {
		out[i] = e
		out[i].Tags = slices.Clone(e.Tags)
		if e.Meta != nil {
			m := make(map[string]string, len(e.Meta))
			for k, v := range e.Meta {
				m[k] = v
			}
			out[i].Meta = m
		}
	}
	return out
}
