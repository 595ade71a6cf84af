package balancer_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
)

// FuzzConfig feeds configurations decoded from JSON to New: it never panics, and a
// configuration it accepts comes back from Config with its defaults filled in, which New
// accepts again unchanged.
func FuzzConfig(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"policy":"round_robin","outlier":{"interval":1000000000,"successRate":{"stdevFactor":1900,"requestVolume":10},"failurePercentage":{"threshold":50}}}`,
		`{"outlier":{"successRate":{"enforcementPercentage":101}}}`,
		`{"outlier":{"failurePercentage":{"threshold":-1,"minimumHosts":-3}}}`,
		`{"limits":{"maxConnections":2,"maxPendingRequests":-1,"maxRequests":5,"maxRetries":3}}`,
		`{"limits":{"maxRequests":-1}}`,
		`{"healthCheck":{"kind":"tcp","interval":3600000000000}}`,
		`{"healthCheck":{"kind":"http","interval":3600000000000,"expectedStatuses":[{"start":200,"end":300},{"start":404,"end":405}]}}`,
		`{"healthCheck":{"expectedStatuses":[{"start":300,"end":200}]}}`,
		`{"healthCheck":{"kind":"grpc"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg balancer.Config
		if json.Unmarshal(data, &cfg) != nil {
			return
		}
		if cfg.HealthCheck != nil && cfg.HealthCheck.Interval > 0 && cfg.HealthCheck.Interval < 1e9 {
			cfg.HealthCheck.Interval = 1e9 // no probing storms from the fuzzer; there are no endpoints anyway
		}
		if cfg.Outlier.Interval > 0 && cfg.Outlier.Interval < 1e6 {
			cfg.Outlier.Interval = 1e6
		}
		b, err := balancer.New(cfg)
		if err != nil {
			return
		}
		defer b.Close()
		got := b.Config()
		b2, err := balancer.New(got)
		require.NoError(t, err)
		defer b2.Close()
		require.Equal(t, got, b2.Config())
	})
}
