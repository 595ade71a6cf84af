package route

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ErrAborted is matched (with errors.Is) by every *[AbortError].
var ErrAborted = errors.New("route: injected abort")

// AbortError is an injected abort: the request was failed on purpose, without being sent.
// HTTP callers answer HTTPStatus; gRPC callers get GRPCCode (package middleware maps it to a
// gRPC status).
type AbortError struct {
	HTTPStatus int
	GRPCCode   int
}

func (e *AbortError) Error() string {
	return fmt.Sprintf("route: injected abort (HTTP %d, gRPC code %d)", e.HTTPStatus, e.GRPCCode)
}

// Is reports whether target is ErrAborted.
func (e *AbortError) Is(target error) bool { return target == ErrAborted }

// Injector injects the faults of one [Fault] config. It is immutable and safe for concurrent
// use; a nil *Injector injects nothing.
type Injector struct {
	delay   *delay
	abort   *abort
	gate    *delayGate // counts the requests held in delays; shared by a table's injectors
	maxHeld int64      // Limits.MaxDelayedRequests
}

// delayGate counts the requests held in injected delays, so that no more than a cap are
// held at once.
type delayGate struct {
	held, skipped atomic.Int64
}

// acquire takes a place for one delayed request, or counts a skipped delay.
func (g *delayGate) acquire(max int64) bool {
	if g.held.Add(1) > max {
		g.held.Add(-1)
		g.skipped.Add(1)
		return false
	}
	return true
}

func (g *delayGate) release() { g.held.Add(-1) }

// FaultStats counts a table's injected delays.
type FaultStats struct {
	// Delayed is the number of requests held in injected delays now.
	Delayed int64
	// Skipped counts the delays not injected because Limits.MaxDelayedRequests requests were
	// already held. The count carries over the tables a Router reloads to.
	Skipped int64
}

// FaultStats returns the counts of the table's injected delays, which it shares with the
// tables of the same Router before and after it.
func (t *Table) FaultStats() FaultStats {
	return FaultStats{Delayed: t.gate.held.Load(), Skipped: t.gate.skipped.Load()}
}

type delay struct {
	ppm                   uint32
	fixed, mean, min, max time.Duration
}

type abort struct {
	ppm          uint32
	status, code int
	err          *AbortError // shared, immutable
}

// NewInjector validates and compiles f on its own (outside a route table), under the default
// [Limits]: delays up to DefaultMaxFaultDelay, and DefaultMaxDelayedRequests requests held
// in its delays at once. It has no route, so it applies to every request it is given.
func NewInjector(f Fault) (*Injector, error) {
	c := newCompiler(Limits{}, nil)
	inj := c.fault(&f, "fault")
	if inj == nil {
		return nil, c.err
	}
	return inj, nil
}

func sampled(ppm uint32) bool { return ppm >= 1_000_000 || rand.Uint32N(1_000_000) < ppm }

// Sample draws this request's fault without waiting: how long to delay it (0 for no delay)
// and the abort to fail it with (nil for none). Callers that wait themselves (gRPC
// interceptors) use it; others use [Injector.Inject]. A delay it returns holds one of the
// Limits.MaxDelayedRequests places for its whole length, even if the caller stops waiting
// sooner; when every place is taken it returns no delay.
func (f *Injector) Sample() (time.Duration, *AbortError) {
	d, ab := f.sample()
	if d > 0 {
		time.AfterFunc(d, f.gate.release)
	}
	return d, ab
}

// sample is Sample, but a delay it returns holds its place until the caller releases it.
func (f *Injector) sample() (time.Duration, *AbortError) {
	if f == nil {
		return 0, nil
	}
	var d time.Duration
	if dl := f.delay; dl != nil && sampled(dl.ppm) {
		if d = dl.draw(); d > 0 && !f.gate.acquire(f.maxHeld) {
			d = 0
		}
	}
	if ab := f.abort; ab != nil && sampled(ab.ppm) {
		if ab.err == nil {
			return d, &AbortError{HTTPStatus: ab.status, GRPCCode: ab.code}
		}
		return d, ab.err
	}
	return d, nil
}

func (d *delay) draw() time.Duration {
	switch {
	case d.fixed > 0:
		return d.fixed
	case d.mean > 0:
		v := time.Duration(rand.ExpFloat64() * float64(d.mean))
		if v > d.max || v < 0 {
			v = d.max
		}
		return v
	default:
		return d.min + time.Duration(rand.Int64N(int64(d.max-d.min)+1))
	}
}

// Inject applies the fault to one client-side request: it waits the drawn delay, returning
// ctx.Err() as soon as ctx ends (the goroutine is given back at once), then returns an
// *[AbortError] if the request is to be aborted, or nil to send it.
func (f *Injector) Inject(ctx context.Context) error {
	d, ab := f.sample()
	if d > 0 {
		err := sleep(ctx, d)
		f.gate.release()
		if err != nil {
			return err
		}
	}
	if ab != nil {
		return ab
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Handler returns a server-side handler that injects f's faults before next. See
// [FaultHandler].
func (f *Injector) Handler(next http.Handler) http.Handler {
	return FaultHandler(next, func(*http.Request) *Injector { return f })
}

// FaultHandler returns a handler that injects, before next, the faults of the injector
// faultFor returns for each request (nil: none). A delayed request whose context ends
// returns without answering; an aborted one is answered with the abort's HTTP status, or for
// a gRPC request (Content-Type application/grpc...) with a trailers-only response carrying
// the gRPC code. See also [Router.FaultHandler].
func FaultHandler(next http.Handler, faultFor func(*http.Request) *Injector) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := faultFor(r).Inject(r.Context())
		var ab *AbortError
		switch {
		case err == nil:
			next.ServeHTTP(w, r)
		case errors.As(err, &ab):
			writeAbort(w, r, ab)
		default:
			// The caller went away during the delay: there is nobody to answer.
		}
	})
}

func writeAbort(w http.ResponseWriter, r *http.Request, ab *AbortError) {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(ab.GRPCCode))
		h.Set("Grpc-Message", "route: injected abort")
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Error(w, "route: injected abort", ab.HTTPStatus)
}
