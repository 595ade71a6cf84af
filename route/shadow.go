package route

import (
	"bytes"
	"context"
	"crypto/sha256"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ShadowHeader is sent on mirrored requests, with the value "true", to tell the shadow
// backend that the request is a copy. It is information for that backend only: nothing in
// this module reads it back, since any caller can send it. A mirrored copy is known by its
// context instead (see [IsShadow]).
const ShadowHeader = "X-Proxyless-Shadow"

// shadowKey marks, in its context, a copy a [Shadower] sends; its value is the copy's
// *ShadowPolicy. Being unexported, no caller outside this package can set it.
type shadowKey struct{}

// IsShadow reports whether ctx is the context of a mirrored copy sent by a [Shadower].
// Middleware uses it not to route (nor mirror) a copy again. Headers play no part: a request
// carrying [ShadowHeader] from outside is not a copy.
func IsShadow(ctx context.Context) bool {
	v, _ := ctx.Value(shadowKey{}).(*ShadowPolicy)
	return v != nil
}

// ShadowDestination returns where the mirrored copy whose context is ctx must go: the
// destination of the shadow policy it was mirrored for, its subset included. It returns nil
// when ctx is not the context of a copy sent by a [Shadower] (see [IsShadow]). Middleware
// sends a copy there instead of routing it: a copy's URL host names only the service, and a
// subset (as in shadow: {destination: {service: svc, subset: {tags: [v3]}}}) must narrow the
// endpoints the copy may reach.
func ShadowDestination(ctx context.Context) *Destination {
	if p, _ := ctx.Value(shadowKey{}).(*ShadowPolicy); p != nil {
		return p.Destination()
	}
	return nil
}

// ShadowHostSuffix is appended to the host (before any port) of mirrored requests, as Envoy
// does, so that the shadow can tell mirrored traffic apart.
const ShadowHostSuffix = "-shadow"

// ShadowPolicy is a compiled [Shadow]: where a route mirrors requests and within which caps.
// It is safe for concurrent use; it counts its own requests in flight.
type ShadowPolicy struct {
	route          string
	dest           Destination
	ppm            uint32
	nonIdempotent  bool
	maxConcurrency int64
	maxBody        int64
	timeout        time.Duration
	compareBody    bool
	inflight       atomic.Int64
}

// Destination returns where copies go (its Service is always set).
func (p *ShadowPolicy) Destination() *Destination { return &p.dest }

// Timeout returns the bound on one shadow request.
func (p *ShadowPolicy) Timeout() time.Duration { return p.timeout }

// ShadowStats counts a Shadower's work.
type ShadowStats struct {
	Mirrored    int64 // copies sent
	Dropped     int64 // refused because a concurrency cap was reached, or after Close
	TooLarge    int64 // refused because the body was over the cap or could not be replayed
	Matches     int64 // shadow answered like the primary
	Mismatches  int64 // shadow answered differently (status, or body hash when compared)
	Errors      int64 // the shadow request failed (transport error, timeout)
	Unpaired    int64 // the primary's outcome never arrived (failed, or not reported in time)
	InFlight    int64 // copies in flight now
	MaxInFlight int64 // the most copies ever in flight at once
}

// Shadower sends mirrored copies of requests, fire-and-forget, through a RoundTripper, and
// compares each shadow answer with the primary's. The primary never waits: Mirror returns at
// once, and a copy that would exceed a concurrency cap (the Shadower's or the route's) is
// dropped. Shadow responses are read (up to a cap), hashed when asked, and discarded; a 101
// (Switching Protocols) answer is closed unread, and upgrade requests are never mirrored.
//
// Use NewShadower; the zero value is not usable. Methods are safe for concurrent use. Close
// stops new copies, cancels those in flight and waits for them.
type Shadower struct {
	rt  http.RoundTripper // immutable
	max int64             // immutable

	ctx    context.Context // immutable; cancelled by Close
	cancel context.CancelFunc

	mu     sync.RWMutex
	closed bool // guarded by mu
	wg     sync.WaitGroup

	inflight, maxSeen                                atomic.Int64
	mirrored, dropped, tooLarge, matches, mismatches atomic.Int64
	errs, unpaired                                   atomic.Int64

	onMismatch func(route, shadow string)                      // set by OnMismatch before the first Mirror
	onResult   func(route, shadow string, result ShadowResult) // set by OnResult before the first Mirror
}

// maxShadowResponse is how much of a shadow (or primary) body is hashed and drained.
const maxShadowResponse = 1 << 20

// NewShadower returns a Shadower sending through rt (nil means http.DefaultTransport) with at
// most maxInFlight copies in flight overall (0 means 64).
func NewShadower(rt http.RoundTripper, maxInFlight int) *Shadower {
	if rt == nil {
		rt = http.DefaultTransport
	}
	if maxInFlight <= 0 {
		maxInFlight = 64
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Shadower{rt: rt, max: int64(maxInFlight), ctx: ctx, cancel: cancel}
}

// Stats returns the counters.
func (s *Shadower) Stats() ShadowStats {
	return ShadowStats{
		Mirrored: s.mirrored.Load(), Dropped: s.dropped.Load(), TooLarge: s.tooLarge.Load(),
		Matches: s.matches.Load(), Mismatches: s.mismatches.Load(), Errors: s.errs.Load(),
		Unpaired: s.unpaired.Load(), InFlight: s.inflight.Load(), MaxInFlight: s.maxSeen.Load(),
	}
}

// OnMismatch sets fn to learn each shadow answer that differed from the primary's (each one
// Stats counts in Mismatches): the name of the route that mirrored the request, and the shadow
// destination's key (service, or service|subset). fn runs on the copy's goroutine, and must not block. Call OnMismatch before the
// first Mirror.
func (s *Shadower) OnMismatch(fn func(route, shadow string)) { s.onMismatch = fn }

// OnResult sets fn to learn the result of each comparison of a shadow answer with the
// primary's, as Stats counts them: matched, mismatched, the shadow failed, or unpaired. The
// arguments are as for OnMismatch. fn runs on the copy's goroutine, and must not block. Call
// OnResult before the first Mirror.
func (s *Shadower) OnResult(fn func(route, shadow string, result ShadowResult)) { s.onResult = fn }

// Close stops mirroring, cancels the copies in flight and waits for their goroutines. It is
// idempotent and returns nil.
func (s *Shadower) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Pending is one mirrored copy on its way. Report the primary's outcome to it with Primary.
// A nil *Pending (nothing mirrored) accepts Primary and does nothing.
type Pending struct {
	ch          chan primaryResult // buffered 1
	sent        atomic.Bool
	compareBody bool
}

type primaryResult struct {
	ok       bool // the primary got a response
	status   int
	sum      []byte // body hash; nil when not compared or not read to the end
	complete bool
}

// Primary reports the primary's result, without blocking. With body comparison on, it
// wraps resp.Body (in place) so that the body is hashed as the caller reads it; the
// comparison happens when the caller reaches EOF or closes the body. Call it once.
func (p *Pending) Primary(resp *http.Response, err error) {
	if p == nil {
		return
	}
	if err != nil || resp == nil {
		p.report(primaryResult{})
		return
	}
	if !p.compareBody || resp.Body == nil || resp.Body == http.NoBody {
		r := primaryResult{ok: true, status: resp.StatusCode}
		if p.compareBody {
			sum := sha256.Sum256(nil) // no body: an empty one
			r.sum, r.complete = sum[:], true
		}
		p.report(r)
		return
	}
	resp.Body = &hashingBody{rc: resp.Body, h: sha256.New(), p: p, status: resp.StatusCode}
}

func (p *Pending) report(r primaryResult) {
	if p.sent.CompareAndSwap(false, true) {
		p.ch <- r
	}
}

// hashingBody hashes the primary's body as it is read and reports at EOF or Close.
type hashingBody struct {
	rc     io.ReadCloser
	h      hash.Hash
	n      int64
	p      *Pending
	status int
}

func (b *hashingBody) Read(buf []byte) (int, error) {
	n, err := b.rc.Read(buf)
	if n > 0 && b.n < maxShadowResponse {
		b.h.Write(buf[:n])
		b.n += int64(n)
	}
	if err == io.EOF {
		b.p.report(primaryResult{ok: true, status: b.status, sum: b.h.Sum(nil), complete: true})
	}
	return n, err
}

func (b *hashingBody) Close() error {
	// Closed before EOF: the status is still worth comparing.
	b.p.report(primaryResult{ok: true, status: b.status})
	return b.rc.Close()
}

// Mirror starts a copy of req to p's destination and returns at once. It returns nil when
// nothing was sent: p is nil, req asks to switch protocols (an Upgrade header with a
// Connection: upgrade token; counted as dropped: a copy would open a second connection and
// hand it over to no one), the Shadower is closed, a cap was reached, or the body is over
// p's cap or cannot be replayed (req.GetBody is nil). The copy's context keeps req's values
// but not its cancellation, and ends after p's timeout; it is marked so that [IsShadow]
// reports true. The copy carries [ShadowHeader] (for the shadow backend's information) and
// the [ShadowHostSuffix]; its URL host is p's destination service. req is
// not modified, and may be used by the caller as soon as Mirror returns.
func (s *Shadower) Mirror(req *http.Request, p *ShadowPolicy) *Pending {
	if p == nil {
		return nil
	}
	if isUpgrade(req.Header) {
		s.dropped.Add(1)
		return nil
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && (req.GetBody == nil || req.ContentLength > p.maxBody) {
		s.tooLarge.Add(1)
		return nil
	}
	if n := p.inflight.Add(1); n > p.maxConcurrency {
		p.inflight.Add(-1)
		s.dropped.Add(1)
		return nil
	}
	n := s.inflight.Add(1)
	if n > s.max {
		s.inflight.Add(-1)
		p.inflight.Add(-1)
		s.dropped.Add(1)
		return nil
	}
	for {
		m := s.maxSeen.Load()
		if n <= m || s.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		s.inflight.Add(-1)
		p.inflight.Add(-1)
		s.dropped.Add(1)
		return nil
	}
	s.wg.Add(1)
	s.mu.RUnlock()

	ctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(req.Context()), shadowKey{}, p), p.timeout)
	stop := context.AfterFunc(s.ctx, cancel)
	clone := req.Clone(ctx)
	clone.Body, clone.ContentLength = nil, 0
	if clone.Header == nil {
		clone.Header = http.Header{}
	}
	clone.Header.Set(ShadowHeader, "true")
	host := req.Host
	if host == "" && req.URL != nil {
		host = req.URL.Host
	}
	clone.Host = shadowHost(host)
	if p.dest.Service != "" && clone.URL != nil {
		clone.URL.Host = p.dest.Service
	}
	pend := &Pending{ch: make(chan primaryResult, 1), compareBody: p.compareBody}
	s.mirrored.Add(1)
	go func() {
		defer func() {
			stop()
			cancel()
			s.inflight.Add(-1)
			p.inflight.Add(-1)
			s.wg.Done()
		}()
		s.run(ctx, clone, req.GetBody, hasBody, p, pend)
	}()
	return pend
}

func (s *Shadower) run(ctx context.Context, clone *http.Request, getBody func() (io.ReadCloser, error), hasBody bool, p *ShadowPolicy, pend *Pending) {
	if hasBody {
		rc, err := getBody()
		if err != nil {
			s.tooLarge.Add(1)
			return
		}
		b, err := io.ReadAll(io.LimitReader(rc, p.maxBody+1))
		rc.Close()
		if err != nil || int64(len(b)) > p.maxBody {
			s.tooLarge.Add(1)
			return
		}
		clone.Body = io.NopCloser(bytes.NewReader(b))
		clone.ContentLength = int64(len(b))
		clone.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := s.rt.RoundTrip(clone)
	if err != nil {
		s.report(p, ShadowFailed)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The body of a 101 is the switched connection: it never ends on its own, and reads
		// from it do not heed ctx. Close it unread and compare the status alone.
		resp.Body.Close()
		s.compare(ctx, p, pend, resp.StatusCode, nil, false)
		return
	}
	var sum []byte
	if p.compareBody {
		h := sha256.New()
		_, err = io.Copy(h, io.LimitReader(resp.Body, maxShadowResponse))
		sum = h.Sum(nil)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxShadowResponse))
	resp.Body.Close()
	if err != nil {
		s.report(p, ShadowFailed)
		return
	}
	s.compare(ctx, p, pend, resp.StatusCode, sum, p.compareBody)
}

// compare waits for the primary's result (no longer than ctx) and reports how the shadow's
// answer (status, and body hash sum when hashed) compares with it.
func (s *Shadower) compare(ctx context.Context, p *ShadowPolicy, pend *Pending, status int, sum []byte, hashed bool) {
	var pr primaryResult
	select {
	case pr = <-pend.ch:
	case <-ctx.Done():
		s.report(p, ShadowUnpaired)
		return
	}
	if !pr.ok {
		s.report(p, ShadowUnpaired)
		return
	}
	same := pr.status == status
	if same && hashed && pr.complete {
		same = bytes.Equal(pr.sum, sum)
	}
	if same {
		s.report(p, ShadowMatched)
	} else {
		s.report(p, ShadowMismatched)
	}
}

// report counts a comparison's result and tells the callbacks.
func (s *Shadower) report(p *ShadowPolicy, r ShadowResult) {
	switch r {
	case ShadowMatched:
		s.matches.Add(1)
	case ShadowMismatched:
		s.mismatches.Add(1)
	case ShadowFailed:
		s.errs.Add(1)
	case ShadowUnpaired:
		s.unpaired.Add(1)
	}
	if s.onResult == nil && (s.onMismatch == nil || r != ShadowMismatched) {
		return
	}
	shadow := p.dest.Key()
	if s.onResult != nil {
		s.onResult(p.route, shadow, r)
	}
	if r == ShadowMismatched && s.onMismatch != nil {
		s.onMismatch(p.route, shadow)
	}
}

// ShadowResult is the result of comparing a shadow's answer with the primary's.
type ShadowResult int

const (
	// ShadowMatched: the shadow answered as the primary did (status, and body when compared).
	ShadowMatched ShadowResult = iota + 1
	// ShadowMismatched: the shadow answered differently.
	ShadowMismatched
	// ShadowFailed: the shadow request failed (a transport error, a refusal, a timeout, or its
	// body could not be read), so there was nothing to compare.
	ShadowFailed
	// ShadowUnpaired: the primary's answer never came (it failed, or was not reported before
	// the shadow's timeout).
	ShadowUnpaired
)

func (r ShadowResult) String() string {
	switch r {
	case ShadowMatched:
		return "matched"
	case ShadowMismatched:
		return "mismatched"
	case ShadowFailed:
		return "shadow_failed"
	case ShadowUnpaired:
		return "unpaired"
	}
	return "ShadowResult(" + strconv.Itoa(int(r)) + ")"
}

// shadowHost appends ShadowHostSuffix to the host part of host[:port].
func shadowHost(host string) string {
	h := hostOnly(host)
	if h == host {
		return host + ShadowHostSuffix
	}
	if strings.HasPrefix(host, "[") {
		return host // an IPv6 literal has no name to suffix
	}
	return h + ShadowHostSuffix + host[len(h):]
}

// isUpgrade reports whether a request with header h asks to switch protocols: it has an
// Upgrade header and a Connection header with the "upgrade" token.
func isUpgrade(h http.Header) bool {
	if len(h["Upgrade"]) == 0 {
		return false
	}
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}
