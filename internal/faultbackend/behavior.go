package faultbackend

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// fault says what a Behavior does instead of (or on top of) answering.
type fault int

const (
	faultNone fault = iota
	faultHang
	faultResetBeforeHeaders
	faultResetAfterHeaders
	faultCloseBeforeHeaders
	faultHandler
)

// defaultPartialLen is the Content-Length announced by ResetAfterHeaders when
// no body was given; half of it is sent before the reset.
const defaultPartialLen = 1024

// Behavior is what a [Backend] does with a request. Build one with [OK],
// [Status], [Hang], [Slow], [ResetBeforeHeaders], [ResetAfterHeaders],
// [CloseBeforeHeaders] or [Handler], and refine it with the With methods,
// which return a modified copy.
//
// The zero value answers 200 with an empty body. A Behavior is immutable
// once built and safe to share between goroutines and backends.
type Behavior struct {
	fault   fault
	code    int           // 0 means 200
	body    []byte        // response body; for ResetAfterHeaders, the announced body
	header  http.Header   // extra response headers
	delay   time.Duration // wait before answering, on the request context
	handler http.HandlerFunc
}

// OK answers 200 with body.
func OK(body string) Behavior { return Behavior{body: []byte(body)} }

// Status answers with the given status code and an empty body; add a body or
// headers (for example Retry-After) with [Behavior.WithBody] and
// [Behavior.WithHeader].
func Status(code int) Behavior { return Behavior{code: code} }

// Hang blocks until the request's context ends (the client gave up, its
// connection closed, or the backend closed) and never answers. A request
// whose context ended because of the client counts as a cancellation.
func Hang() Behavior { return Behavior{fault: faultHang} }

// Slow waits d, then answers 200 "ok". It waits on the request context: a
// client that gives up first is counted as a cancellation and gets nothing.
// Combine with other answers through [Behavior.WithDelay], e.g.
// Status(503).WithDelay(d).
func Slow(d time.Duration) Behavior { return Behavior{body: []byte("ok"), delay: d} }

// ResetBeforeHeaders reads the request, then resets the connection (TCP RST,
// SO_LINGER 0) without writing anything: the client sees ECONNRESET.
func ResetBeforeHeaders() Behavior { return Behavior{fault: faultResetBeforeHeaders} }

// ResetAfterHeaders writes a 200 status line and headers announcing a
// Content-Length, sends half of the body, then resets the connection: the
// client gets a response whose body read fails (ECONNRESET or
// io.ErrUnexpectedEOF). The announced body is 1024 bytes of 'x' unless set
// with [Behavior.WithBody]; the code may be changed with [Behavior.WithStatus].
func ResetAfterHeaders() Behavior { return Behavior{fault: faultResetAfterHeaders} }

// CloseBeforeHeaders reads the request, then closes the connection cleanly
// (FIN) without writing anything: the client sees io.EOF.
func CloseBeforeHeaders() Behavior { return Behavior{fault: faultCloseBeforeHeaders} }

// Handler serves requests with h, for anything the other behaviours do not
// cover. The request body has already been read by the backend (to record
// its hash) and is replayed to h. h must return once r.Context() is done so
// that [Backend.Close] does not wait for it.
func Handler(h http.HandlerFunc) Behavior { return Behavior{fault: faultHandler, handler: h} }

// WithStatus returns a copy of b that answers with code.
func (b Behavior) WithStatus(code int) Behavior {
	b.code = code
	return b
}

// WithBody returns a copy of b that answers with body.
func (b Behavior) WithBody(body string) Behavior {
	b.body = []byte(body)
	return b
}

// WithHeader returns a copy of b that adds the response header key: value.
func (b Behavior) WithHeader(key, value string) Behavior {
	h := b.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Add(key, value)
	b.header = h
	return b
}

// WithDelay returns a copy of b that waits d (on the request context) before
// doing whatever it does.
func (b Behavior) WithDelay(d time.Duration) Behavior {
	b.delay = d
	return b
}

func (b Behavior) status() int {
	if b.code == 0 {
		return http.StatusOK
	}
	return b.code
}

// String describes b for logs and [Request.Behavior], e.g. "status 503 after 1s".
func (b Behavior) String() string {
	var s string
	switch b.fault {
	case faultHang:
		s = "hang"
	case faultResetBeforeHeaders:
		s = "reset before headers"
	case faultResetAfterHeaders:
		s = fmt.Sprintf("reset after headers (status %d)", b.status())
	case faultCloseBeforeHeaders:
		s = "close before headers"
	case faultHandler:
		s = "handler"
	default:
		s = fmt.Sprintf("status %d", b.status())
	}
	if b.delay > 0 {
		s += " after " + b.delay.String()
	}
	if len(b.header) > 0 {
		s += " with headers " + strings.Join(slices.Sorted(maps.Keys(b.header)), ",")
	}
	return s
}
