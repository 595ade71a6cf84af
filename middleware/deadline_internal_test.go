package middleware

import (
	"strconv"
	"testing"
	"time"
)

// FuzzParseTimeout checks that TimeoutHeader's parser accepts exactly 1 to 8 ASCII digits,
// reads them as milliseconds, and reads back whatever the Transport writes.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"0", "1", "250", "99999999", "100000000", "", "-1", "+1", " 1", "1 ", "1e3", "0x1", "١", "00000001", "5ms"} {
		f.Add(s, int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, s string, n int64) {
		d, ok := parseTimeout([]string{s})
		digits := len(s) >= 1 && len(s) <= maxTimeoutDigits
		for i := 0; i < len(s); i++ {
			digits = digits && s[i] >= '0' && s[i] <= '9'
		}
		if ok != digits {
			t.Fatalf("parseTimeout(%q) ok = %v, want %v", s, ok, digits)
		}
		if ok {
			ms, err := strconv.ParseInt(s, 10, 64)
			if err != nil || d != time.Duration(ms)*time.Millisecond || d < 0 || d > maxTimeoutMillis*time.Millisecond {
				t.Fatalf("parseTimeout(%q) = %v, want %d ms", s, d, ms)
			}
		}
		if _, ok := parseTimeout([]string{s, s}); ok {
			t.Fatalf("two values of %q accepted", s)
		}
		// What the Transport writes for any time left, negative or huge, reads back clamped.
		left := time.Duration(n)
		got, ok := parseTimeout([]string{formatTimeout(left)})
		want := min(max(left.Truncate(time.Millisecond), 0), maxTimeoutMillis*time.Millisecond)
		if !ok || got != want {
			t.Fatalf("formatTimeout(%v) read back as %v, %v; want %v", left, got, ok, want)
		}
	})
}
