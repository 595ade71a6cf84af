package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/route/reload"
)

// routeFile is the route document the program writes; %g is the canary's weight.
const routeFile = `# Written by examples/canary, which edits the canary's weight.
routes:
  - name: shop
    match:
      hosts: [shop]
    canary:
      stable: {service: shop, subset: {tags: [v1]}}
      canary: {service: shop, subset: {tags: [v2]}}
      weight: %g
      analysis:
        # Long enough that only this file moves the weight. A failing canary is still rolled
        # back at once, as soon as minRequests of its requests show too many errors: here an
        # error rate 0.2 points above the stable side's, a handful of failures in a thousand,
        # so that the analysis acts before the failures open the client's circuit breaker
        # (which would keep them from the analysis, as local refusals).
        interval: 1h
        minRequests: 20
        maxErrorRateIncrease: 0.2
    shadow:
      destination: {service: shop-v3}
      percent: 25
      compareBody: true
`

// mesh is the client side: the route file and its watcher, the router and the transport.
type mesh struct {
	path     string
	router   *route.Router
	watcher  *reload.FileWatcher
	reloads  chan reload.Result
	rollback atomic.Pointer[route.Event] // the analysis's rollback, once it happened
	tr       *middleware.Transport
}

// newMesh writes the route file with the canary at weight, starts following it, and builds
// the transport. Call close when done, also after an error.
func newMesh(b *backends, dir string, weight float64) (*mesh, error) {
	m := &mesh{path: filepath.Join(dir, "routes.yaml"), reloads: make(chan reload.Result, 16)}
	if err := m.write(weight); err != nil {
		return m, err
	}
	var err error
	m.router, err = route.NewRouter(route.Config{}, route.WithEvents(m.onEvent))
	if err != nil {
		return m, err
	}
	m.watcher, err = reload.File(m.router, m.path, reload.WithHook(func(r reload.Result) {
		select {
		case m.reloads <- r:
		default: // nobody waits for this one
		}
	}))
	if err != nil {
		return m, err
	}
	m.tr, err = middleware.NewTransport(nil,
		middleware.WithResolver(b.resolver()),
		middleware.WithRoutes(m.router),
	)
	return m, err
}

func (m *mesh) close() {
	if m.tr != nil {
		m.tr.Close()
	}
	if m.watcher != nil {
		m.watcher.Close()
	}
}

// onEvent receives the canary analysis's events; it keeps the first rollback.
func (m *mesh) onEvent(ev route.Event) {
	if ev.Kind == route.EventRollback {
		m.rollback.CompareAndSwap(nil, &ev)
	}
}

// write replaces the route file, as an editor does: a new file renamed over the old one.
func (m *mesh) write(weight float64) error {
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, routeFile, weight), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, m.path)
}

// edit sets the canary's weight in the route file and waits until the watcher has loaded it.
func (m *mesh) edit(ctx context.Context, weight float64) error {
	before := m.router.Version()
	if err := m.write(weight); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		select {
		case r := <-m.reloads:
			if r.Err != nil {
				return fmt.Errorf("the edited route file was refused: %w", r.Err)
			}
			if r.Version > before {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("the route file watcher did not load the edit: %w", ctx.Err())
		}
	}
}

// canary returns the shop route's canary as it stands.
func (m *mesh) canary() (route.CanaryStatus, error) {
	rt := m.router.Table().Route("shop")
	if rt == nil {
		return route.CanaryStatus{}, errors.New("the route table has no route shop")
	}
	cs, ok := rt.Canary()
	if !ok {
		return cs, errors.New("the shop route has no canary")
	}
	return cs, nil
}

// mismatches returns how many shadow answers differed from the primary's, over every route
// and shadow destination: the transport's Stats().Shadow.
func (m *mesh) mismatches() int64 {
	return m.tr.Stats().Shadow.Mismatched
}
