package middleware

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Streams and upgrades through the Transport.
//
// The attempt timeout (WithAttemptTimeout, a route's attemptTimeout) bounds an attempt until
// its response headers arrive: a response that has started is never cut by it, retried or
// hedged, however long its body streams. The overall timeout (WithTimeout, a route's timeout)
// and the caller's context bound the whole request, body included, as a gRPC deadline bounds
// a whole call: give a stream that may run for ever no overall timeout (a route can set a
// longer one), and bound it by an idle timeout (WithStreamIdleTimeout, a route's idleTimeout)
// instead. A 101 Switching Protocols answer (WebSocket and other upgrades) ends the request:
// no timeout of the Transport, idle or otherwise, applies to the upgraded connection, whose
// Body is the io.ReadWriteCloser net/http promises; the protocol spoken on it keeps itself
// alive. An upgrade request is never hedged (two handshakes would open two connections); it is
// retried, as any request, only when no response came.

// WithStreamIdleTimeout cuts a response body when a read of it waits d without a byte
// arriving: the read returns an error matching ErrStreamIdle (and a net.Error whose Timeout
// is true), the connection is closed, and the response's endpoint is not blamed (the stream
// had started: its outcome was counted when its headers arrived). Time the caller spends
// between reads does not count. It suits server-sent events and other long responses whose
// server sends something (a comment, a keep-alive) more often than d. A route's idleTimeout
// overrides it, and its disableIdleTimeout turns it off. It never applies to an upgraded
// (101) connection. Default 0: none.
//
// Taken by NewTransport.
func WithStreamIdleTimeout(d time.Duration) TransportOption {
	return transportOption(func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("middleware: WithStreamIdleTimeout must not be negative, got %v", d))
		}
		c.streamIdle = d
	})
}

// ErrStreamIdle is matched (errors.Is) by the error a response body's Read returns when the
// stream idle timeout (WithStreamIdleTimeout) cut it.
var ErrStreamIdle = errors.New("middleware: stream idle timeout")

// idleError is what a cut body's Read returns.
type idleError struct{ d time.Duration }

func (e *idleError) Error() string {
	return fmt.Sprintf("middleware: stream idle timeout: no response bytes for %v", e.d)
}
func (e *idleError) Is(target error) bool { return target == ErrStreamIdle }
func (e *idleError) Timeout() bool        { return true }
func (e *idleError) Temporary() bool      { return false }

// isUpgrade reports whether req asks to switch protocols (Connection: upgrade and an Upgrade
// header), as a WebSocket handshake does.
func isUpgrade(req *http.Request) bool {
	if len(req.Header["Upgrade"]) == 0 {
		return false
	}
	for _, v := range req.Header["Connection"] {
		if hopToken(v, "upgrade") {
			return true
		}
	}
	return false
}

// idleBody cuts a response body whose reads wait longer than idle without a byte: a timer
// checks, each time it fires, whether a read has been waiting that long and if so calls cut
// (which cancels the attempt's context, so that the read returns); otherwise it sets itself
// for when the read in progress (or the next one) could first be idle for that long.
type idleBody struct {
	rc      io.ReadCloser
	idle    time.Duration // immutable
	cut     func()        // cancels the attempt; idempotent
	release func()        // run once on Close; idempotent
	base    time.Time     // immutable: the origin of readAt

	readAt atomic.Int64 // nanoseconds since base when the read in progress started; 0: none
	fired  atomic.Bool  // cut has been called
	done   atomic.Bool  // the body ended or was closed: the timer stops for good
	timer  *time.Timer
	once   sync.Once
}

func newIdleBody(rc io.ReadCloser, idle time.Duration, cut, release func()) *idleBody {
	b := &idleBody{rc: rc, idle: idle, cut: cut, release: release, base: time.Now()}
	b.timer = time.AfterFunc(idle, b.check)
	return b
}

// check runs on the timer's goroutine.
func (b *idleBody) check() {
	if b.done.Load() {
		return
	}
	start := b.readAt.Load()
	if start == 0 {
		b.timer.Reset(b.idle)
		return
	}
	waited := time.Since(b.base) - time.Duration(start)
	if waited < b.idle {
		b.timer.Reset(b.idle - waited)
		return
	}
	b.fired.Store(true)
	b.cut()
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.readAt.Store(max(int64(time.Since(b.base)), 1))
	n, err := b.rc.Read(p)
	b.readAt.Store(0)
	if err != nil {
		if b.fired.Load() {
			err = &idleError{b.idle}
		}
		b.stop() // the stream has ended, one way or another
	}
	return n, err
}

// stop stops the timer; should check be running, it returns without setting it again.
func (b *idleBody) stop() {
	b.done.Store(true)
	b.timer.Stop()
}

func (b *idleBody) Close() error {
	b.stop()
	err := b.rc.Close()
	b.once.Do(b.release)
	return err
}

// streamBody returns the body of the winning response resp, wrapped so that closing it calls
// release (and, with an idle timeout, so that a stalled read is cut): see releaseBody.
func streamBody(resp *http.Response, idle time.Duration, release func()) io.ReadCloser {
	if idle > 0 && resp.Body != http.NoBody && resp.StatusCode != http.StatusSwitchingProtocols {
		return newIdleBody(resp.Body, idle, release, release)
	}
	return releaseBody(resp, release)
}

// hopToken reports whether v, a Connection header value, names token, ignoring case.
func hopToken(v, token string) bool {
	for f := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(f), token) {
			return true
		}
	}
	return false
}

// forHTTP completes policies for the HTTP client: its attempt timeout bounds an attempt until
// the response headers arrive, and idle is its stream idle timeout (whose cut needs each
// attempt to have a context of its own).
func (p *policies) forHTTP(idle time.Duration) {
	p.idle = idle
	p.eng.AttemptTimeoutSendOnly = true
	p.eng.Cancellable = idle > 0
}
