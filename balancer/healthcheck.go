package balancer

import (
	"context"
	"sync"
	"time"
)

// healthCheckConcurrency bounds the probes in flight at once.
const healthCheckConcurrency = 16

// prober checks one endpoint; a nil error means it passed.
type prober func(ctx context.Context, addr string) error

// healthChecker runs active health checks over the balancer's current endpoints, in rounds
// every Interval (and soon after each Update), and flips their unhealthy flags by the
// thresholds. It is transport-agnostic; healthcheck_http.go supplies the HTTP prober.
type healthChecker struct {
	b         *Balancer   // immutable
	cfg       HealthCheck // immutable
	probe     prober      // immutable
	closeIdle func()      // immutable; releases the prober's idle connections

	wake      chan struct{} // buffered 1: run a round now
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newHealthChecker(b *Balancer, cfg HealthCheck, probe prober, closeIdle func()) *healthChecker {
	ctx, cancel := context.WithCancel(context.Background())
	h := &healthChecker{b: b, cfg: cfg, probe: probe, closeIdle: closeIdle, wake: make(chan struct{}, 1), cancel: cancel}
	h.wg.Add(1)
	go h.run(ctx)
	return h
}

// poke asks for a round soon, without blocking.
func (h *healthChecker) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *healthChecker) close() {
	h.closeOnce.Do(func() {
		h.cancel()
		h.wg.Wait()
		if h.closeIdle != nil {
			h.closeIdle()
		}
	})
}

func (h *healthChecker) run(ctx context.Context) {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
		}
		h.round(ctx)
	}
}

// round probes every endpoint of the current snapshot once and waits for the probes.
func (h *healthChecker) round(ctx context.Context) {
	s := h.b.snap.Load()
	sem := make(chan struct{}, healthCheckConcurrency)
	var wg sync.WaitGroup
	for k, e := range s.states {
		addr := s.eps[k].Addr
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
			err := h.probe(pctx, addr)
			cancel()
			if ctx.Err() != nil {
				return // closing: a probe cut short says nothing about the endpoint
			}
			h.record(e, err == nil)
		}()
	}
	wg.Wait()
}

// record applies one check result to e, flipping its health by the thresholds. Only one
// probe per endpoint runs at a time, so the streak counters need no more than atomics.
func (h *healthChecker) record(e *endpointState, ok bool) {
	if ok {
		e.hcFail.Store(0)
		if e.unhealthy.Load() && e.hcPass.Add(1) >= int64(h.cfg.HealthyThreshold) {
			e.hcPass.Store(0)
			e.unhealthy.Store(false)
			h.b.gen.Add(1)
		}
		return
	}
	e.hcPass.Store(0)
	if !e.unhealthy.Load() && e.hcFail.Add(1) >= int64(h.cfg.UnhealthyThreshold) {
		e.hcFail.Store(0)
		e.unhealthy.Store(true)
		h.b.gen.Add(1)
	}
}
