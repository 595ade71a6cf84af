package middleware

import (
	"net/http"
	"testing"
	"time"
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
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"", "0", "17", "Thu, 26 Nov 2026 12:00:30 GMT", "x", "4294967296", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if d < 0 {
			t.Fatalf("%q: negative delay %v", s, d)
		}
		if !ok && d != 0 {
			t.Fatalf("%q: rejected with a delay %v", s, d)
		}
	})
}

func TestBudget(t *testing.T) {
	p := RetryPolicy{BudgetRatio: 0.2, MinRetriesPerSecond: -1}
	if err := p.normalize(); err != nil {
		t.Fatal(err)
	}
	b := newBudget(p)
	now := time.Now()
	if b.withdraw(now) {
		t.Fatal("an empty budget with no floor allowed a retry")
	}
	for range 10 {
		b.deposit()
	}
	allowed := 0
	for range 10 {
		if b.withdraw(now) {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("10 requests at 20%% allowed %d retries, want 2", allowed)
	}
	// The balance is capped: a long quiet period does not bank unlimited retries.
	for range 100 * budgetCapRequests {
		b.deposit()
	}
	banked, limit := 0, int(b.capMilli/budgetMilliPerRetry)
	for b.withdraw(now) && banked <= limit {
		banked++
	}
	if banked == 0 || banked > limit {
		t.Fatalf("after %d requests the budget paid %d retries, want 1..%d (its cap)", 100*budgetCapRequests, banked, limit)
	}

	floor := RetryPolicy{BudgetRatio: -1, MinRetriesPerSecond: 5}
	if err := floor.normalize(); err != nil {
		t.Fatal(err)
	}
	fb := newBudget(floor)
	allowed = 0
	for range 20 {
		if fb.withdraw(now) {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("a floor of 5/s allowed %d retries at one instant, want 5", allowed)
	}
	for range 1000 {
		fb.deposit() // no share: deposits add nothing
	}
	if fb.withdraw(now) {
		t.Fatal("a negative ratio still banked retries")
	}
	if !fb.withdraw(now.Add(time.Second)) {
		t.Fatal("the floor did not refill")
	}
}

func TestIsServiceName(t *testing.T) {
	for host, want := range map[string]bool{
		"payments": true, "pay-ments_2": true, "": false, "payments:80": false,
		"api.example.com": false, "127.0.0.1": false, "[::1]:80": false,
	} {
		if got := isServiceName(host); got != want {
			t.Errorf("isServiceName(%q) = %v", host, got)
		}
	}
}
