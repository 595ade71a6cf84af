package balancer_test

import (
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
)

// drive sends n round-robin picks per endpoint through b at the bubble's clock; failPer10
// says, per address, how many of each 10 requests to it fail (with a 500).
func drive(t *testing.T, b *balancer.Balancer, rounds int, failPer10 map[string]int) {
	t.Helper()
	seen := map[string]int{}
	for range rounds * len(b.Endpoints()) {
		p, err := b.Pick(balancer.PickInfo{})
		require.NoError(t, err)
		addr := p.Endpoint.Addr
		o := balancer.OutcomeSuccess
		if seen[addr]%10 < failPer10[addr] {
			o = balancer.OutcomeFailure
		}
		seen[addr]++
		p.Done(balancer.DoneInfo{Latency: time.Millisecond, Outcome: o})
	}
}

func ejectedAddrs(b *balancer.Balancer) []string {
	var out []string
	now := time.Now()
	for _, e := range b.Endpoints() {
		if e.Ejected(now) {
			out = append(out, e.Addr)
		}
	}
	return out
}

func sweepConfig(o balancer.OutlierConfig) balancer.Config {
	o.Interval = 10 * time.Second
	return balancer.Config{Policy: balancer.PolicyRoundRobin, Outlier: o}
}

// Success rate: of five endpoints, the one failing 30 % of its requests is ejected at the next
// interval (mean 0.94, stdev 0.12, limit 0.712), and only it; when all five fail alike, none
// is. Nothing happens before the interval ends.
func TestSuccessRateEjection(t *testing.T) {
	addrs := []string{"a:1", "b:1", "c:1", "d:1", "e:1"}
	for _, tc := range []struct {
		name string
		fail map[string]int
		want []string
	}{
		{"one outlier", map[string]int{"e:1": 3}, []string{"e:1"}},
		{"all alike", map[string]int{"a:1": 3, "b:1": 3, "c:1": 3, "d:1": 3, "e:1": 3}, nil},
		{"none failing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, err := balancer.New(sweepConfig(balancer.OutlierConfig{
					SuccessRate: &balancer.SuccessRateEjection{RequestVolume: 100},
				}))
				require.NoError(t, err)
				defer b.Close()
				b.Update(endpoints(addrs...))
				drive(t, b, 100, tc.fail)
				time.Sleep(5 * time.Second)
				synctest.Wait()
				assert.Empty(t, ejectedAddrs(b), "not before the interval")
				time.Sleep(5 * time.Second)
				synctest.Wait()
				assert.Equal(t, tc.want, ejectedAddrs(b))
				assert.EqualValues(t, len(tc.want), b.Ejections())
			})
		})
	}
}

// The success-rate check needs MinimumHosts endpoints with RequestVolume requests each in the
// interval: below the volume, the outlier is not judged.
func TestSuccessRateNeedsVolume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := balancer.New(sweepConfig(balancer.OutlierConfig{
			SuccessRate: &balancer.SuccessRateEjection{RequestVolume: 101},
		}))
		require.NoError(t, err)
		defer b.Close()
		b.Update(endpoints("a:1", "b:1", "c:1", "d:1", "e:1"))
		drive(t, b, 100, map[string]int{"e:1": 3})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Empty(t, ejectedAddrs(b))
		// Each interval is judged on its own requests: the next one has enough.
		drive(t, b, 101, map[string]int{"e:1": 3})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"e:1"}, ejectedAddrs(b))
	})
}

// Failure percentage: an endpoint failing 90 % (over the default threshold of 85) is ejected,
// one failing 80 % is not; the ejection lasts BaseEjectionTime and the endpoint returns.
func TestFailurePercentageEjection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := balancer.New(sweepConfig(balancer.OutlierConfig{
			FailurePercentage: &balancer.FailurePercentageEjection{},
			BaseEjectionTime:  time.Minute,
		}))
		require.NoError(t, err)
		defer b.Close()
		b.Update(endpoints("a:1", "b:1", "c:1", "d:1", "e:1"))
		drive(t, b, 50, map[string]int{"d:1": 8, "e:1": 9})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"e:1"}, ejectedAddrs(b))
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Empty(t, ejectedAddrs(b), "back after BaseEjectionTime")
	})
}

// MaxEjectionPercent bounds the interval checks too: with four of five endpoints failing
// every request and the default 50 %, two are ejected.
func TestFailurePercentageMaxEjection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := balancer.New(sweepConfig(balancer.OutlierConfig{
			FailurePercentage: &balancer.FailurePercentageEjection{},
			// The consecutive checks stay out of the way.
			ConsecutiveGatewayFailure: 1 << 30,
		}))
		require.NoError(t, err)
		defer b.Close()
		b.Update(endpoints("a:1", "b:1", "c:1", "d:1", "e:1"))
		drive(t, b, 50, map[string]int{"b:1": 10, "c:1": 10, "d:1": 10, "e:1": 10})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Len(t, ejectedAddrs(b), 2)
	})
}

func TestOutlierSweepConfig(t *testing.T) {
	c, err := balancer.New(balancer.Config{Outlier: balancer.OutlierConfig{
		SuccessRate:       &balancer.SuccessRateEjection{},
		FailurePercentage: &balancer.FailurePercentageEjection{},
	}})
	require.NoError(t, err)
	defer c.Close()
	o := c.Config().Outlier
	assert.Equal(t, balancer.DefaultOutlierInterval, o.Interval)
	assert.Equal(t, balancer.SuccessRateEjection{StdevFactor: 1900, EnforcementPercentage: 100, MinimumHosts: 5, RequestVolume: 100}, *o.SuccessRate)
	assert.Equal(t, balancer.FailurePercentageEjection{Threshold: 85, EnforcementPercentage: 100, MinimumHosts: 5, RequestVolume: 50}, *o.FailurePercentage)

	for field, o := range map[string]balancer.OutlierConfig{
		"Outlier.Interval":                                {Interval: -1},
		"Outlier.SuccessRate.StdevFactor":                 {SuccessRate: &balancer.SuccessRateEjection{StdevFactor: -1}},
		"Outlier.SuccessRate.EnforcementPercentage":       {SuccessRate: &balancer.SuccessRateEjection{EnforcementPercentage: 101}},
		"Outlier.SuccessRate.MinimumHosts":                {SuccessRate: &balancer.SuccessRateEjection{MinimumHosts: -1}},
		"Outlier.SuccessRate.RequestVolume":               {SuccessRate: &balancer.SuccessRateEjection{RequestVolume: -1}},
		"Outlier.FailurePercentage.Threshold":             {FailurePercentage: &balancer.FailurePercentageEjection{Threshold: 101}},
		"Outlier.FailurePercentage.EnforcementPercentage": {FailurePercentage: &balancer.FailurePercentageEjection{EnforcementPercentage: -5}},
	} {
		_, err := balancer.New(balancer.Config{Outlier: o})
		require.Error(t, err, field)
		assert.Contains(t, err.Error(), field)
	}

	// camelCase keys, as the other fields.
	var cfg balancer.Config
	require.NoError(t, json.Unmarshal([]byte(`{"outlier":{"interval":"5s",
		"successRate":{"stdevFactor":1000,"enforcementPercentage":50,"minimumHosts":3,"requestVolume":20},
		"failurePercentage":{"threshold":60,"enforcementPercentage":40,"minimumHosts":2,"requestVolume":10}}}`), &cfg))
	assert.Equal(t, 5*time.Second, cfg.Outlier.Interval)
	assert.Equal(t, balancer.SuccessRateEjection{StdevFactor: 1000, EnforcementPercentage: 50, MinimumHosts: 3, RequestVolume: 20}, *cfg.Outlier.SuccessRate)
	assert.Equal(t, balancer.FailurePercentageEjection{Threshold: 60, EnforcementPercentage: 40, MinimumHosts: 2, RequestVolume: 10}, *cfg.Outlier.FailurePercentage)
}
