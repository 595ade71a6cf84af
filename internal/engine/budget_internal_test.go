package engine

import (
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	b := NewBudget(0.2, -1)
	now := time.Now()
	if b.Withdraw(now) {
		t.Fatal("an empty budget with no floor allowed a retry")
	}
	for range 10 {
		b.Deposit()
	}
	allowed := 0
	for range 10 {
		if b.Withdraw(now) {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("10 requests at 20%% allowed %d retries, want 2", allowed)
	}
	// The balance is capped: a long quiet period does not bank unlimited retries.
	for range 100 * budgetCapRequests {
		b.Deposit()
	}
	banked, limit := 0, int(b.capMilli/budgetMilliPerRetry)
	for b.Withdraw(now) && banked <= limit {
		banked++
	}
	if banked == 0 || banked > limit {
		t.Fatalf("after %d requests the budget paid %d retries, want 1..%d (its cap)", 100*budgetCapRequests, banked, limit)
	}

	fb := NewBudget(-1, 5)
	allowed = 0
	for range 20 {
		if fb.Withdraw(now) {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("a floor of 5/s allowed %d retries at one instant, want 5", allowed)
	}
	for range 1000 {
		fb.Deposit() // no share: deposits add nothing
	}
	if fb.Withdraw(now) {
		t.Fatal("a negative ratio still banked retries")
	}
	if !fb.Withdraw(now.Add(time.Second)) {
		t.Fatal("the floor did not refill")
	}
}
