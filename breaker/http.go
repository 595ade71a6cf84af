package breaker

// This file is the net/http adapter: it classifies the results of HTTP calls. It wraps no
// RoundTripper; package middleware does.

import (
	"context"
	"errors"
	"net/http"
)

// Classifier decides the Outcome of one HTTP call from what the RoundTripper returned.
type Classifier func(resp *http.Response, err error) Outcome

// HTTPClassifier classifies the results of HTTP calls; see ClassifyHTTP for the rules. Its zero
// value applies the defaults. It is a plain value, safe to share between goroutines.
type HTTPClassifier struct {
	// TooManyRequests is the Outcome of a 429 response. Default Ignore: an endpoint that sheds
	// load on purpose is neither failing nor proven healthy (the balancer steers away from it
	// on Retry-After). Set Failure to let 429s open the breaker, or Success.
	TooManyRequests Outcome `json:"tooManyRequests,omitempty" yaml:"tooManyRequests,omitempty"`

	// Override, when set, classifies every call in place of the rules, except those that end
	// with an error after the caller's context is done: those are always Ignore. It may
	// delegate to ClassifyHTTP(context.Background(), resp, err). Default nil.
	Override Classifier `json:"-" yaml:"-"`
}

// ClassifyHTTP classifies the result of one HTTP call with the default HTTPClassifier.
//
// ctx is the caller's context: the one the caller gave, not a per-attempt context derived from
// it. The rules, in order:
//
//   - an error while ctx is done (the caller cancelled or its deadline passed): Ignore;
//   - an error matching context.Canceled (cancelled between the caller and the endpoint, such
//     as a hedge that lost) or ErrOpen (refused locally): Ignore;
//   - any other error: Failure. That covers connect errors (*net.OpError), resets, TLS and
//     certificate errors, and context.DeadlineExceeded while the caller still waits, which is a
//     per-attempt timeout the endpoint did not meet;
//   - a 5xx response: Failure;
//   - a 429 response: HTTPClassifier.TooManyRequests, Ignore by default;
//   - any other response (1xx to 4xx): Success;
//   - neither a response nor an error, which breaks the RoundTripper contract: Failure.
func ClassifyHTTP(ctx context.Context, resp *http.Response, err error) Outcome {
	return HTTPClassifier{}.Classify(ctx, resp, err)
}

// Classify classifies the result of one HTTP call; see ClassifyHTTP.
func (c HTTPClassifier) Classify(ctx context.Context, resp *http.Response, err error) Outcome {
	if err != nil && ctx != nil && ctx.Err() != nil {
		return Ignore
	}
	if c.Override != nil {
		return c.Override(resp, err)
	}
	switch {
	case err != nil:
		if errors.Is(err, context.Canceled) || errors.Is(err, ErrOpen) {
			return Ignore
		}
		return Failure
	case resp == nil:
		return Failure
	case resp.StatusCode == http.StatusTooManyRequests:
		return c.TooManyRequests
	case resp.StatusCode >= 500:
		return Failure
	default:
		return Success
	}
}
