package breaker

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Successes counted without the lock by many goroutines at once are all recorded into
// failsafe-go by the next outcome that takes the lock: none lost, none counted twice.
func TestQuietSuccessesNotLostUnderConcurrency(t *testing.T) {
	const goroutines, each = 8, 100 // 800 successes, under the window
	for range 20 {
		b, err := New(Config{MinimumVolume: 1000, FailureRateThreshold: 100})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range each {
					p, err := b.Allow()
					if err != nil {
						t.Error(err)
						return
					}
					p.Done(Success)
				}
			})
		}
		wg.Wait()
		p, err := b.Allow()
		require.NoError(t, err)
		p.Done(Failure) // flushes the counted successes
		m := b.cb.Metrics()
		require.EqualValues(t, goroutines*each+1, m.Executions())
		require.EqualValues(t, 1, m.Failures())
	}
}

// A window over maxQuietWindow records every outcome under the lock.
func TestLargeWindowHasNoQuietPath(t *testing.T) {
	b, err := New(Config{MinimumVolume: maxQuietWindow + 1})
	require.NoError(t, err)
	p, err := b.Allow()
	require.NoError(t, err)
	p.Done(Success)
	require.Zero(t, b.quiet.Load())
	require.EqualValues(t, 1, b.cb.Metrics().Executions())
}
