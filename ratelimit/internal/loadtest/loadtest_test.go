package loadtest

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMaxWindow(t *testing.T) {
	s := int64(time.Second)
	ts := []int64{0, 1, 2, s - 1, s, s + 1, 3 * s}
	if got := MaxWindow(ts, time.Second); got != 4 {
		t.Fatalf("MaxWindow = %d, want 4", got)
	}
}
