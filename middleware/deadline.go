package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/route"
)

// Deadline propagation over HTTP: the Transport sends the time left before its request's
// deadline in TimeoutHeader (see there); NewHandler gives the request's context that deadline,
// so that a Transport call the handler makes with r.Context() carries the rest of it on.

// maxTimeoutDigits bounds TimeoutHeader's value: at most 8 decimal digits of milliseconds
// (about 27.8 hours), as gRPC bounds grpc-timeout. The Transport sends at most that.
const (
	maxTimeoutDigits = 8
	maxTimeoutMillis = 99_999_999
)

// formatTimeout is TimeoutHeader's value for left: whole milliseconds, rounded down, at least 0
// and at most maxTimeoutMillis.
func formatTimeout(left time.Duration) string {
	return strconv.FormatInt(min(max(left.Milliseconds(), 0), maxTimeoutMillis), 10)
}

// parseTimeout reads a TimeoutHeader value strictly: 1 to 8 ASCII digits, nothing else (no
// sign, space, unit or second value). ok is false for anything else.
func parseTimeout(v []string) (d time.Duration, ok bool) {
	if len(v) != 1 {
		return 0, false
	}
	s := v[0]
	if len(s) == 0 || len(s) > maxTimeoutDigits {
		return 0, false
	}
	var ms int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		ms = ms*10 + int64(c-'0')
	}
	return time.Duration(ms) * time.Millisecond, true
}

// WithMaxServerDeadline caps the deadline NewHandler gives each request's context: the
// client's deadline (TimeoutHeader, which a proxyless Transport sends) when it is sooner,
// else d from the request's arrival, for requests that carry no deadline too (as Envoy's
// max_grpc_timeout does). The handler sees it as r.Context()'s deadline; nothing answers for
// it: a handler that ignores its context runs on. Default 0: no cap, and the client's
// deadline alone, when it sends one.
//
// Taken by NewHandler. A gRPC server takes its deadline from grpc-timeout itself.
func WithMaxServerDeadline(d time.Duration) HandlerOption {
	return handlerOption(func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithMaxServerDeadline must not be negative, got %v", d))
		}
		c.server.maxDeadline = d
	})
}

// WithDeadlineTrust makes NewHandler honour a client's deadline (TimeoutHeader) only from the
// callers trusted admits; other requests get only the server's own cap (WithMaxServerDeadline).
// trusted reads a route.Request with the request's host, method, path, query, headers and
// remote address, and an Identity: the SPIFFE ID of the verified mTLS peer
// (WithPeerAuthorization) when there is one, else the subject of the verified token
// (WithJWT); see route.TrustPrefixes and route.TrustIdentities. It is called once per request
// that carries the header, and must be safe for concurrent use. Default: every caller's
// deadline is honoured (a deadline can only shorten the caller's own request).
//
// Taken by NewHandler.
func WithDeadlineTrust(trusted func(*route.Request) bool) HandlerOption {
	return handlerOption(func(c *config) {
		if trusted == nil {
			c.errs = append(c.errs, errors.New("middleware: WithDeadlineTrust: predicate is nil"))
		}
		c.server.deadlineTrust = trusted
	})
}

func buildDeadline(c *config, next http.Handler) http.Handler {
	return &deadlineHandler{next: next, max: c.server.maxDeadline, trusted: c.server.deadlineTrust}
}

// deadlineHandler gives each request's context the client's deadline, capped.
type deadlineHandler struct {
	next    http.Handler              // immutable
	max     time.Duration             // immutable; 0: no cap
	trusted func(*route.Request) bool // immutable; nil: every caller
}

func (h *deadlineHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d, ok := h.clientTimeout(r)
	if h.max > 0 && (!ok || d > h.max) {
		d, ok = h.max, true
	}
	ctx := callerAddrContext(r) // for the trust of the calls the handler makes: route_caller.go
	if ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if ctx != r.Context() {
		r = r.WithContext(ctx) // one copy of the request for both
	}
	h.next.ServeHTTP(w, r)
}

// clientTimeout returns the time the client says it has left, when it says so in a
// well-formed TimeoutHeader and is trusted to.
func (h *deadlineHandler) clientTimeout(r *http.Request) (time.Duration, bool) {
	v, present := r.Header[TimeoutHeader]
	if !present {
		return 0, false
	}
	d, ok := parseTimeout(v)
	if !ok || h.trusted == nil {
		return d, ok
	}
	rq := route.FromHTTP(r)
	rq.Identity = callerIdentity(r.Context())
	return d, h.trusted(&rq)
}

// callerIdentity is the verified mTLS peer's SPIFFE ID, else the verified token's subject,
// else "".
func callerIdentity(ctx context.Context) string {
	if p, ok := auth.PeerFromContext(ctx); ok && p.SPIFFEID != "" {
		return p.SPIFFEID
	}
	return auth.SubjectFromContext(ctx)
}
