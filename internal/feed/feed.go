// Package feed holds the state that every discovery watcher shares: the last good endpoint
// set, its version, the fail-static rule for errors and sudden empty sets, and the blocking
// Next that watchers expose.
package feed

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/proxyless/proxyless/discovery"
)

// Feed is the published state of one watched service. The zero value is not usable; call New.
// A Feed is safe for concurrent use: one goroutine publishes, readers call Next and Status.
type Feed struct {
	emptyAnswers int           // immutable
	emptyGrace   time.Duration // immutable

	mu      sync.Mutex
	eps     []discovery.Endpoint // guarded by mu; replaced, never modified
	version uint64               // guarded by mu; 0 until the first good answer
	changed chan struct{}        // guarded by mu; closed and replaced when version moves
	status  discovery.Status     // guarded by mu
	empty   emptyRun             // guarded by mu
}

// emptyRun tracks empty answers while the feed still serves a non-empty set.
type emptyRun struct {
	since   time.Time // zero when the last answer was not empty
	answers int       // empty answers with distinct IDs since `since`
	id      uint64    // ID of the last counted empty answer
}

// New returns a feed that believes an empty answer, after a non-empty set, only once
// emptyAnswers answers with distinct IDs have said so or answers have said so for emptyGrace.
func New(emptyAnswers int, emptyGrace time.Duration) *Feed {
	return &Feed{emptyAnswers: emptyAnswers, emptyGrace: emptyGrace, changed: make(chan struct{})}
}

// Publish offers a good answer. id distinguishes answers (a Consul index, a lookup counter);
// two empty answers with the same id count once. It reports whether the set was taken.
func (f *Feed) Publish(eps []discovery.Endpoint, id uint64, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.LastUpdate = now
	if len(eps) == 0 && len(f.eps) > 0 {
		if f.empty.since.IsZero() {
			f.empty = emptyRun{since: now, answers: 1, id: id}
		} else if id != f.empty.id {
			f.empty.answers++
			f.empty.id = id
		}
		if f.empty.answers < f.emptyAnswers && now.Sub(f.empty.since) < f.emptyGrace {
			f.markStale(now, fmt.Errorf("answered empty %d time(s); keeping the last good set", f.empty.answers))
			return false
		}
	}
	f.empty = emptyRun{}
	f.status.Stale, f.status.StaleSince, f.status.LastError = false, time.Time{}, nil
	if f.version > 0 && discovery.Equal(f.eps, eps) {
		return true
	}
	f.eps = eps
	f.version++
	close(f.changed)
	f.changed = make(chan struct{})
	return true
}

// Fail records that the source failed or answered something unusable; the last good set stays.
func (f *Feed) Fail(err error, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.markStale(now, err)
}

func (f *Feed) markStale(now time.Time, err error) {
	if !f.status.Stale {
		f.status.Stale, f.status.StaleSince = true, now
	}
	f.status.LastError = err
}

// EmptyGraceLeft returns how long until an unconfirmed empty set is believed by time alone,
// or 0 when no empty set is pending. Watchers shorten their next wait to it.
func (f *Feed) EmptyGraceLeft(now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.empty.since.IsZero() {
		return 0
	}
	return max(f.emptyGrace-now.Sub(f.empty.since), time.Nanosecond)
}

// Status returns the feed's staleness.
func (f *Feed) Status() discovery.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// Next returns a copy of the current set when its version differs from *seen (updating
// *seen), else blocks until it changes, ctx is done (ctx.Err()) or done is closed
// (discovery.ErrClosed).
func (f *Feed) Next(ctx context.Context, seen *uint64, done <-chan struct{}) ([]discovery.Endpoint, error) {
	for {
		f.mu.Lock()
		eps, version, changed := f.eps, f.version, f.changed
		f.mu.Unlock()
		if version != *seen {
			*seen = version
			return discovery.Clone(eps), nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-done:
			return nil, discovery.ErrClosed
		case <-changed:
		}
	}
}
