package reload_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/internal/consultest"
)

var shared consultest.Shared

func TestMain(m *testing.M) { goleak.VerifyTestMain(shared.Wrap(m)) }

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
