package middleware

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// WithMaxRequestBody makes NewHandler refuse request bodies over n bytes with 413 Content Too
// Large, before the body is read past n:
//
//   - a request whose Content-Length is over n is answered 413 at once, without reading any
//     of its body, and its connection is closed after the answer (HTTP/1);
//   - a body of unknown length (chunked, or HTTP/2 without Content-Length) is cut at n: the
//     read that would go past it fails with an *http.MaxBytesError, and if the handler has
//     not written its status by then, its answer becomes 413 (what it writes then is
//     dropped); a handler that has already written keeps its status and sees the
//     error. A gateway (NewGateway) turns the error into 413 itself.
//
// A route may set its own limit (route.Edge's MaxBodyBytes, with WithEdgeRoutes), which
// replaces n for the requests it matches. n must be positive. Default: no limit.
//
// Taken by NewHandler.
func WithMaxRequestBody(n int64) HandlerOption {
	return handlerOption(func(c *config) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithMaxRequestBody must be positive, got %d", n))
			return
		}
		c.server.edge.maxBody = n
	})
}

// tooLargeBody is the text of a 413 answer.
const tooLargeBody = "Request Entity Too Large\n"

// refuseTooLarge answers 413, asking net/http to close an HTTP/1 connection afterwards rather
// than read the rest of the body. The answer has a Content-Length, so that a client reads it
// whole without waiting for the connection to end.
func refuseTooLarge(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Del("Content-Encoding")
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(len(tooLargeBody)))
	if r.ProtoMajor == 1 {
		hd.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	_, _ = io.WriteString(w, tooLargeBody)
}

// lingerAfter413 is how long an abandoned connection stays open for reading after its write
// side is closed, as net/http lingers before closing a connection it did not read to the end
// (so that the client reads the answer before its unread bytes make the kernel reset it).
const lingerAfter413 = 500 * time.Millisecond

// abandonBody takes an HTTP/1 connection whose request body is left unread from net/http,
// which would otherwise read up to 256 KiB more of it after the handler (looking for its end,
// although the connection is closing), and closes it: the answer flushed, the write side shut
// at once, the socket after lingerAfter413. w must be the writer the 413 went through. HTTP/2
// resets the stream by itself and is left alone.
func abandonBody(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 {
		return
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	conn, brw, err := rc.Hijack()
	if err != nil {
		return // not hijackable: net/http drains and closes as it does
	}
	_ = brw.Flush()
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	time.AfterFunc(lingerAfter413, func() { _ = conn.Close() })
}

// limitedBody is http.MaxBytesReader's cut, with a flag the stage and the gateway can read
// from another goroutine than the one reading (a transport writes the body on its own).
type limitedBody struct {
	rc       io.ReadCloser
	left     int64 // bytes still allowed; guarded by being read by one goroutine at a time
	limit    int64 // immutable
	err      error // the sticky error, once there is one
	exceeded atomic.Bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Read one byte more than allowed, to tell "exactly the limit" from "over it".
	if int64(len(p))-1 > b.left {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) <= b.left {
		b.left -= int64(n)
		b.err = err
		return n, err
	}
	n = int(b.left)
	b.left = 0
	b.exceeded.Store(true)
	b.err = &http.MaxBytesError{Limit: b.limit}
	return n, b.err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// bodyGuard turns the handler's answer into 413 when the body went over the limit before the
// handler wrote its status. It is used on the handler's goroutine only.
type bodyGuard struct {
	http.ResponseWriter
	r       *http.Request
	body    *limitedBody
	wrote   bool // the status is written (by the handler or as 413)
	refused bool // the answer is 413
}

// WriteHeader passes an informational status through and checks the body before the final
// one.
func (g *bodyGuard) WriteHeader(code int) {
	switch {
	case g.refused:
		return
	case g.wrote || (code >= 100 && code < 200 && code != http.StatusSwitchingProtocols):
		g.ResponseWriter.WriteHeader(code)
		return
	}
	g.wrote = true
	if g.body.exceeded.Load() {
		g.refused = true
		refuseTooLarge(g.ResponseWriter, g.r)
		return
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *bodyGuard) Write(p []byte) (int, error) {
	if !g.wrote {
		g.WriteHeader(http.StatusOK)
	}
	if g.refused {
		return len(p), nil // dropped: a writer error would make a proxy abort the connection
	}
	return g.ResponseWriter.Write(p)
}

// FlushError flushes what the handler wrote (for http.ResponseController).
func (g *bodyGuard) FlushError() error {
	if !g.wrote {
		g.WriteHeader(http.StatusOK)
	}
	if g.refused {
		return nil
	}
	return http.NewResponseController(g.ResponseWriter).Flush()
}

// Flush is FlushError for handlers that ask for an http.Flusher.
func (g *bodyGuard) Flush() { _ = g.FlushError() }

// Unwrap returns the ResponseWriter underneath (for http.ResponseController).
func (g *bodyGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// finish answers 413 when the handler returned without writing and its body went over, and
// reports whether the answer is 413.
func (g *bodyGuard) finish() bool {
	if !g.wrote && g.body.exceeded.Load() {
		g.wrote, g.refused = true, true
		refuseTooLarge(g.ResponseWriter, g.r)
	}
	return g.refused
}

// bodyOverLimit reports whether r's body was cut by a limit of this package (for the
// gateway's error handler, whose error may not wrap the *http.MaxBytesError).
func bodyOverLimit(r *http.Request) bool {
	b, ok := r.Body.(*limitedBody)
	return ok && b.exceeded.Load()
}
