package overload

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"

	"github.com/proxyless/proxyless/ratelimit"
)

// Bulkhead caps the number of calls in flight.
//
// Create it with [NewBulkhead]; the zero value is not usable. It is safe for
// concurrent use and needs no cleanup.
type Bulkhead struct {
	bh      bulkhead.Bulkhead[any] // immutable
	maxWait time.Duration          // immutable
}

// NewBulkhead returns a cap of maxConcurrent calls in flight. A call over
// the cap waits up to maxWait for a slot (0: refused at once).
func NewBulkhead(maxConcurrent int, maxWait time.Duration) (*Bulkhead, error) {
	if maxConcurrent < 1 {
		return nil, fmt.Errorf("overload: maxConcurrent %d is below 1", maxConcurrent)
	}
	if maxWait < 0 {
		return nil, fmt.Errorf("overload: maxWait %v is negative", maxWait)
	}
	return &Bulkhead{bh: bulkhead.New[any](uint(maxConcurrent)), maxWait: maxWait}, nil
}

// Acquire implements [Limiter]. The outcome is ignored.
func (b *Bulkhead) Acquire(ctx context.Context) (func(Outcome), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.maxWait == 0 {
		if !b.bh.TryAcquirePermit() {
			return nil, ratelimit.ErrLimited
		}
	} else if err := b.bh.AcquirePermitWithMaxWait(ctx, b.maxWait); err != nil {
		if errors.Is(err, bulkhead.ErrFull) {
			return nil, ratelimit.ErrLimited
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("overload: %w", err)
	}
	return once(func(Outcome) { b.bh.ReleasePermit() }), nil
}
