package middleware

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/internal/backoff"
	"github.com/proxyless/proxyless/tracing"
)

// hedgeResult is what one hedged attempt produced, in a reply message of its own.
type hedgeResult struct {
	err     error
	reply   proto.Message
	att     *grpcbalancer.Attempt
	ta      *tracing.Attempt // the attempt's telemetry; nil without
	headers bool
	hedge   bool // the attempt was a hedge
}

// hedged runs a unary call as HedgePolicy says: the first attempt and, each time Delay passes
// without an answer, one more to another endpoint, up to MaxHedges, each paid for by the retry
// budget. Every attempt decodes into a reply message of its own, so that attempts never share
// memory; the first final answer (a success, or a failure that is not retried) wins, its
// reply is copied into the caller's, and the other attempts are cancelled (the servers see the
// cancellation). Retryable failures are followed by a further attempt while the retry
// allowance lasts. It returns the call's error and the telemetry of the attempt whose result
// that is (nil without telemetry, or when the call's context ended first).
func (c *grpcClient) hedged(ctx context.Context, pols *policies, tr *tracing.Request, call *grpcbalancer.Call, method string, req any, reply proto.Message, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) (*tracing.Attempt, error) {
	pol := &pols.hedge
	rp := &pols.retry
	maxAttempts := 1 + pol.MaxHedges + rp.MaxRetries
	results := make(chan hedgeResult, maxAttempts) // buffered: losers never block
	cancels := make([]context.CancelFunc, 0, maxAttempts)
	defer func() {
		for _, cancel := range cancels {
			cancel() // the losers: their servers see the RPC cancelled
		}
	}()
	launch := func(kind tracing.AttemptKind, waited time.Duration) {
		a := call.NewAttempt()
		actx, cancel, ta := c.attempt(ctx, pols, a, true, tr, len(cancels), kind, waited)
		cancels = append(cancels, cancel)
		r := reply.ProtoReflect().New().Interface()
		go func() {
			var h headerCapture
			headers, err := invokeOnce(actx, pols, &h, method, req, r, cc, invoker, opts)
			c.attemptDone(a)
			ta.EndGRPC(err)
			results <- hedgeResult{err: err, reply: r, att: a, ta: ta, headers: headers, hedge: kind == tracing.AttemptHedge}
		}()
	}
	launch(tracing.AttemptFirst, 0)
	pending, hedges, retries := 1, 0, 0
	timer := time.NewTimer(pol.Delay)
	defer timer.Stop()
	var last error              // the latest retryable failure
	var lastTA *tracing.Attempt // its attempt's telemetry
	for {
		select {
		case res := <-results:
			pending--
			if res.err == nil {
				if res.hedge {
					c.stats.hedgeWins.Add(1)
				}
				proto.Reset(reply)
				proto.Merge(reply, res.reply)
				return res.ta, nil
			}
			retry, wait := c.retryable(ctx, pols, res.err, res.att, res.headers)
			if !retry {
				if res.att.PickError() != nil && pending > 0 {
					res.ta.Discarded()
					continue // refused locally; another attempt may still answer
				}
				if res.att.PickError() != nil && last != nil {
					return lastTA, last
				}
				if res.hedge && res.att.PickError() == nil {
					c.stats.hedgeWins.Add(1) // a final answer, if a failure
				}
				return res.ta, localError(res.err, res.att)
			}
			if lastTA != nil {
				lastTA.Discarded()
			}
			last, lastTA = res.err, res.ta
			if pending > 0 {
				continue
			}
			if retries >= rp.MaxRetries || len(cancels) >= maxAttempts {
				return lastTA, last
			}
			if !c.bud.withdraw(time.Now()) {
				c.budgetRefused(tr, tracing.AttemptRetry)
				return lastTA, last
			}
			if !backoff.Sleep(ctx, wait) {
				return lastTA, last
			}
			retries++
			c.stats.retries.Add(1)
			pending++
			launch(tracing.AttemptRetry, wait)
			timer.Reset(pol.Delay)
		case <-timer.C:
			if hedges >= pol.MaxHedges || len(cancels) >= maxAttempts {
				continue
			}
			if !c.bud.withdraw(time.Now()) {
				c.budgetRefused(tr, tracing.AttemptHedge)
				continue
			}
			hedges++
			c.stats.hedges.Add(1)
			pending++
			launch(tracing.AttemptHedge, 0)
			timer.Reset(pol.Delay)
		case <-ctx.Done():
			if last != nil {
				return lastTA, last
			}
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}
