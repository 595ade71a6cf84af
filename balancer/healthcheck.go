package balancer

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"
)

// healthCheckConcurrency bounds the probes in flight at once.
const healthCheckConcurrency = 16

// Prober probes endpoints for active health checks. Probe checks one endpoint, within ctx
// (which carries HealthCheck.Timeout): a nil error means it passed. Probes of different
// endpoints run at once; Close, called once when the balancer closes, releases what the
// prober holds (idle connections).
type Prober interface {
	Probe(ctx context.Context, addr string) error
	Close() error
}

// ProberBuilder makes the prober of a health check kind for the validated configuration hc.
type ProberBuilder func(hc HealthCheck) (Prober, error)

// Health check kinds built in; package balancer/grpcbalancer registers HealthCheckGRPC.
const (
	HealthCheckHTTP = "http"
	HealthCheckTCP  = "tcp"
	HealthCheckGRPC = "grpc"
)

var (
	probersMu sync.RWMutex
	probers   = map[string]ProberBuilder{HealthCheckHTTP: newHTTPProber, HealthCheckTCP: newTCPProber}
)

// RegisterProber makes kind a HealthCheck.Kind, probed by the probers build makes. It is
// meant to be called from an init function (package balancer/grpcbalancer registers
// "grpc"); a later registration of a kind replaces the earlier one.
func RegisterProber(kind string, build ProberBuilder) {
	probersMu.Lock()
	defer probersMu.Unlock()
	probers[kind] = build
}

func proberOf(kind string) ProberBuilder {
	probersMu.RLock()
	defer probersMu.RUnlock()
	return probers[kind]
}

func proberKinds() []string {
	probersMu.RLock()
	defer probersMu.RUnlock()
	kinds := make([]string, 0, len(probers))
	for k := range probers {
		kinds = append(kinds, strconv.Quote(k))
	}
	slices.Sort(kinds)
	return kinds
}

// healthChecker runs active health checks over the balancer's current endpoints, in rounds
// every Interval (and soon after each Update), and flips their unhealthy flags by the
// thresholds. It is transport-agnostic; healthcheck_http.go supplies the HTTP and TCP probers.
type healthChecker struct {
	b     *Balancer   // immutable
	cfg   HealthCheck // immutable
	probe Prober      // immutable

	wake      chan struct{} // buffered 1: run a round now
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newHealthChecker(b *Balancer, cfg HealthCheck, probe Prober) *healthChecker {
	ctx, cancel := context.WithCancel(context.Background())
	h := &healthChecker{b: b, cfg: cfg, probe: probe, wake: make(chan struct{}, 1), cancel: cancel}
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
		_ = h.probe.Close()
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
			err := h.probe.Probe(pctx, addr)
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
