//go:build race

package route_test

// raceEnabled: under the race detector sync.Pool drops items at random, so pooled regexp
// machines are reallocated and allocation counts are not meaningful.
const raceEnabled = true
