package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs, bounded, and shows what it claims: the load is spread over the three
// servers, the failing one is ejected after a few calls, and retries hide its failures.
func TestExampleSmoke(t *testing.T) {
	for _, fail := range []string{"unavailable", "stop"} {
		t.Run(fail, func(t *testing.T) {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			o := options{calls: 600, workers: 4, failAt: 200, fail: fail, work: time.Millisecond, timeout: 5 * time.Second}
			s, err := example(ctx, o, &out)
			t.Log("\n" + out.String())
			require.NoError(t, err)
			assert.EqualValues(t, o.calls, s.ok+s.failed)
			assert.GreaterOrEqual(t, s.successRate(), 0.999)
			for _, srv := range s.servers {
				assert.Positive(t, srv.served.Load(), "server %s answered nothing", srv.name)
			}
			assert.EqualValues(t, o.calls, s.stats.Requests, "the client counted every call")
			assert.GreaterOrEqual(t, s.stats.Attempts, s.stats.Requests)
			if fail == "unavailable" {
				assert.Positive(t, s.servers[2].after.Load(), "c saw calls after failing")
				assert.LessOrEqual(t, s.servers[2].after.Load(), int64(20), "c was ejected")
				assert.Positive(t, s.stats.Retries, "c's refusals were retried")
				assert.Positive(t, s.stats.Ejections, "the client's balancer reports the ejection")
			}
			assert.Contains(t, out.String(), "success rate")
		})
	}
}

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"-calls", "60", "-workers", "2"}, &out))
	assert.Contains(t, out.String(), "success rate")
	for _, bad := range [][]string{{"-calls", "0"}, {"-fail", "explode"}, {"-workers", "-1"}, {"-fail-at", "99999"}} {
		assert.Error(t, run(bad, &out), "%v", bad)
	}
}
