package breaker_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/breaker"
)

// The lock-free path for successes (a count-based window with no failure in it) batches
// successes and records them in failsafe-go only when an outcome that matters comes. The
// breaker must still open on exactly the call a failsafe-go circuit breaker fed every outcome
// one by one opens on, whatever the mix of outcomes. Both are given the same sequences;
// their states are compared after every call, through a half-open round and back.
func TestQuietSuccessesMatchFailsafe(t *testing.T) {
	for _, volume := range []int{1, 3, 20} {
		for _, failRate := range []float64{0, 0.02, 0.2, 0.5, 0.9} {
			t.Run(fmt.Sprintf("volume=%d/fail=%v", volume, failRate), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { quietScenario(t, volume, failRate) })
			})
		}
	}
}

func quietScenario(t *testing.T, volume int, failRate float64) {
	rng := rand.New(rand.NewPCG(uint64(volume), uint64(failRate*100)))
	const delay = time.Millisecond
	cfg := breaker.Config{MinimumVolume: volume, OpenDelay: delay, HalfOpenProbes: 1}
	b, err := breaker.New(cfg)
	require.NoError(t, err)
	ref := circuitbreaker.NewBuilder[any]().
		WithFailureRateThreshold(breaker.DefaultFailureRateThreshold/100, uint(volume), 0).
		WithSuccessThresholdRatio(1, 1).WithDelay(delay).Build()
	opens := 0
	for i := range 3000 {
		fail := rng.Float64() < failRate
		o, refOK := breaker.Success, ref.TryAcquirePermit()
		if fail {
			o = breaker.Failure
		}
		p, err := b.Allow()
		require.Equal(t, refOK, err == nil, "call %d: admitted by one breaker only", i)
		if err == nil {
			p.Done(o)
			if fail {
				ref.RecordFailure()
			} else {
				ref.RecordSuccess()
			}
		}
		want := map[circuitbreaker.State]breaker.State{circuitbreaker.ClosedState: breaker.StateClosed,
			circuitbreaker.OpenState: breaker.StateOpen, circuitbreaker.HalfOpenState: breaker.StateHalfOpen}[ref.State()]
		require.Equal(t, want, b.State(), "call %d", i)
		if want == breaker.StateOpen {
			// Past the delay both let one probe through, which closes or reopens them.
			opens++
			time.Sleep(2 * delay)
		}
	}
	if failRate >= 0.5 {
		require.Positive(t, opens, "the scenario opens the breaker")
	}
	if failRate == 0 {
		require.Zero(t, opens)
	}
}
