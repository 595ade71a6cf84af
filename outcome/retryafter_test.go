package outcome_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/proxyless/proxyless/outcome"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"3", 3 * time.Second, true},
		{"120", 2 * time.Minute, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"99999999999", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Wed, 21 Oct 2015 07:28:00", 0, false},
		{"soon", 0, false},
	} {
		got, ok := outcome.ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("outcome.ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"", "0", "17", "Thu, 26 Nov 2026 12:00:30 GMT", "x", "4294967296", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := outcome.ParseRetryAfter(s, now)
		if d < 0 {
			t.Fatalf("%q: negative delay %v", s, d)
		}
		if !ok && d != 0 {
			t.Fatalf("%q: rejected with a delay %v", s, d)
		}
	})
}
