package breaker

import (
	"fmt"
	"math"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
)

// Defaults applied to zero fields of a Config.
const (
	DefaultFailureRateThreshold = 50.0
	DefaultMinimumVolume        = 20
	DefaultOpenDelay            = 5 * time.Second
	DefaultHalfOpenProbes       = 3
)

// Bounds enforced by Config.Validate.
const (
	maxMinimumVolume  = 1_000_000
	minWindow         = 10 * time.Millisecond
	maxHalfOpenProbes = 1000
)

// Config holds the settings of a circuit breaker. It is a plain struct meant to be loaded from a
// file (YAML or JSON, camelCase keys, durations as strings such as "5s"). The zero value of
// every field means its default, so the zero Config is a valid configuration.
//
// The breaker opens when the rolling window (the last MinimumVolume calls, or the calls of the
// last Window) holds at least MinimumVolume calls and at least FailureRateThreshold percent of
// them failed. After OpenDelay it lets HalfOpenProbes calls through at a time; SuccessesToClose
// probe successes close it, and once more than HalfOpenProbes-SuccessesToClose probes of a round
// have failed, it opens again.
type Config struct {
	// FailureRateThreshold is the percentage of failed calls in the window, in (0,100], at or
	// above which the breaker opens. The rate is compared in whole percent (failsafe-go rounds
	// it to two decimals of the ratio). Default 50.
	FailureRateThreshold float64 `json:"failureRateThreshold,omitempty" yaml:"failureRateThreshold,omitempty"`

	// MinimumVolume is how many calls the window must hold before the failure rate can open the
	// breaker, in [1, 1000000]. With a count-based window (Window 0) it is also the size of the
	// window. Default 20.
	MinimumVolume int `json:"minimumVolume,omitempty" yaml:"minimumVolume,omitempty"`

	// Window, when positive, makes the window time-based: the breaker looks at the calls of the
	// last Window, kept in 10 buckets so that calls leave it in steps of Window/10; at least 10ms.
	// Default 0: the window is count-based, the last MinimumVolume calls however old. A count
	// window is cheaper (failsafe-go reads the clock on every call recorded into a time window)
	// but never forgets the failures of an endpoint that gets little traffic.
	Window time.Duration `json:"window,omitempty" yaml:"window,omitempty"`

	// OpenDelay is how long the breaker stays open before it lets probes through. Must not be
	// negative. Default 5s.
	OpenDelay time.Duration `json:"openDelay,omitempty" yaml:"openDelay,omitempty"`

	// OpenDelayJitter varies each OpenDelay at random by up to this fraction either way, in
	// [0,1), so that breakers which opened together do not probe together. Default 0 (none).
	OpenDelayJitter float64 `json:"openDelayJitter,omitempty" yaml:"openDelayJitter,omitempty"`

	// HalfOpenProbes is how many calls a half-open breaker lets through at the same time, in
	// [1, 1000]. Default 3.
	HalfOpenProbes int `json:"halfOpenProbes,omitempty" yaml:"halfOpenProbes,omitempty"`

	// SuccessesToClose is how many probe successes close the breaker, in [1, HalfOpenProbes].
	// Default HalfOpenProbes: every probe of a round must succeed.
	SuccessesToClose int `json:"successesToClose,omitempty" yaml:"successesToClose,omitempty"`
}

// Validate reports the first invalid field of c, by name, or nil. Zero fields are valid: they
// mean the default.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

// normalize validates c and returns it with its defaults filled in.
func (c Config) normalize() (Config, error) {
	switch {
	case c.FailureRateThreshold == 0:
		c.FailureRateThreshold = DefaultFailureRateThreshold
	case math.IsNaN(c.FailureRateThreshold) || c.FailureRateThreshold < 0 || c.FailureRateThreshold > 100:
		return c, fieldError("FailureRateThreshold", "in (0,100]", c.FailureRateThreshold)
	}
	switch {
	case c.MinimumVolume == 0:
		c.MinimumVolume = DefaultMinimumVolume
	case c.MinimumVolume < 0 || c.MinimumVolume > maxMinimumVolume:
		return c, fieldError("MinimumVolume", fmt.Sprintf("in [1,%d]", maxMinimumVolume), c.MinimumVolume)
	}
	if c.Window != 0 && c.Window < minWindow {
		return c, fieldError("Window", "0 or >= "+minWindow.String(), c.Window)
	}
	switch {
	case c.OpenDelay == 0:
		c.OpenDelay = DefaultOpenDelay
	case c.OpenDelay < 0:
		return c, fieldError("OpenDelay", ">= 0", c.OpenDelay)
	}
	if math.IsNaN(c.OpenDelayJitter) || c.OpenDelayJitter < 0 || c.OpenDelayJitter >= 1 {
		return c, fieldError("OpenDelayJitter", "in [0,1)", c.OpenDelayJitter)
	}
	switch {
	case c.HalfOpenProbes == 0:
		c.HalfOpenProbes = DefaultHalfOpenProbes
	case c.HalfOpenProbes < 0 || c.HalfOpenProbes > maxHalfOpenProbes:
		return c, fieldError("HalfOpenProbes", fmt.Sprintf("in [1,%d]", maxHalfOpenProbes), c.HalfOpenProbes)
	}
	switch {
	case c.SuccessesToClose == 0:
		c.SuccessesToClose = c.HalfOpenProbes
	case c.SuccessesToClose < 0 || c.SuccessesToClose > c.HalfOpenProbes:
		return c, fieldError("SuccessesToClose", fmt.Sprintf("in [1,HalfOpenProbes=%d]", c.HalfOpenProbes), c.SuccessesToClose)
	}
	return c, nil
}

func fieldError(field, want string, got any) error {
	return fmt.Errorf("breaker: %s must be %s, got %v", field, want, got)
}

// failsafe builds the failsafe-go circuit breaker for a normalized Config. The builder panics on
// some bad input, so it must only ever see a Config that normalize accepted.
func (c Config) failsafe(listener func(circuitbreaker.StateChangedEvent)) circuitbreaker.CircuitBreaker[any] {
	// With a zero thresholding period failsafe-go keeps count-based stats whose capacity is the
	// execution threshold: the last MinimumVolume calls.
	b := circuitbreaker.NewBuilder[any]().
		WithFailureRateThreshold(c.FailureRateThreshold/100, uint(c.MinimumVolume), c.Window).
		WithSuccessThresholdRatio(uint(c.SuccessesToClose), uint(c.HalfOpenProbes)).
		WithDelay(c.OpenDelay).
		OnStateChanged(listener)
	if c.OpenDelayJitter > 0 {
		b = b.WithJitterFactor(c.OpenDelayJitter)
	}
	return b.Build()
}
