package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"github.com/proxyless/proxyless/route"
)

// phase is what one batch of requests saw.
type phase struct {
	name       string
	fileWeight float64 // the canary weight the route file says
	weight     float64 // the weight in force after the batch (the analysis may have changed it)
	state      route.AnalysisState
	requests   int            // requests sent
	failed     int            // answers other than 200, and errors
	errors     int            // requests that got no answer (an open breaker, say)
	firstError string         // the first of those errors
	served     map[string]int // answers by the version that gave them (v1, v2)
	mismatches int64          // the shadow's mismatches so far
}

// share is the percentage of the phase's requests version served.
func (p phase) share(version string) float64 {
	if p.requests == 0 {
		return 0
	}
	return 100 * float64(p.served[version]) / float64(p.requests)
}

// result is what a run saw, for the smoke test.
type result struct {
	phases     []phase
	rollback   *route.Event // the analysis's rollback; nil if it never happened
	mismatches int64        // the shadow's mismatches at the end
}

// canary runs the whole scenario and prints each phase as it ends.
func canary(ctx context.Context, o options, out io.Writer) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	b := startBackends()
	defer b.close()
	dir, err := os.MkdirTemp("", "proxyless-canary-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	m, err := newMesh(b, dir, 1)
	defer m.close()
	if err != nil {
		return result{}, err
	}
	fmt.Fprintf(out, "route file %s; stable v1, canary v2, shadow v3 (25 %% mirrored)\n", m.path)
	var res result
	if err := promote(ctx, m, o, out, &res); err != nil {
		return res, err
	}
	if err := fail(ctx, b, m, o, out, &res); err != nil {
		return res, err
	}
	sh := m.tr.Stats().Shadow
	res.mismatches = sh.Mismatched
	fmt.Fprintf(out, "shadow v3: %d answers differed from the primary's (%d mirrored, %d matched, %d failed)\n",
		sh.Mismatched, sh.Mirrored, sh.Matched, sh.Failed)
	return res, nil
}

// promote moves the canary from 1 % to 50 % to 100 % by editing the route file, with a batch
// of requests after each edit.
func promote(ctx context.Context, m *mesh, o options, out io.Writer, res *result) error {
	for i, w := range []float64{1, 50, 100} {
		if i > 0 {
			if err := m.edit(ctx, w); err != nil {
				return err
			}
		}
		p, err := m.batch(ctx, fmt.Sprintf("file says %g %%", w), w, o, nil)
		if err != nil {
			return err
		}
		res.phases = append(res.phases, p)
		p.print(out)
	}
	return nil
}

// fail makes v2 fail and sends requests until the analysis rolls it back (at most one batch),
// then one more batch.
func fail(ctx context.Context, b *backends, m *mesh, o options, out io.Writer, res *result) error {
	b.failing.Store(true)
	fmt.Fprintln(out, "v2 starts answering 500")
	rolledBack := func() bool { return m.rollback.Load() != nil }
	p, err := m.batch(ctx, "v2 failing", 100, o, rolledBack)
	if err != nil {
		return err
	}
	res.phases = append(res.phases, p)
	p.print(out)
	res.rollback = m.rollback.Load()
	if res.rollback == nil {
		return fmt.Errorf("the analysis did not roll the failing canary back in %d requests", p.requests)
	}
	ev := res.rollback
	fmt.Fprintf(out, "analysis: %s %g %% -> %g %% after %d canary requests, %d failed: %s\n",
		ev.Kind, ev.From, ev.To, ev.Canary.Requests, ev.Canary.Failures, ev.Reason)
	p, err = m.batch(ctx, "after the rollback, file still says 100 %", 100, o, nil)
	if err != nil {
		return err
	}
	res.phases = append(res.phases, p)
	p.print(out)
	return nil
}

func (p phase) print(out io.Writer) {
	fmt.Fprintf(out, "%-42s %4d requests: v1 %5.1f %%, v2 %5.1f %%, %d failed; weight now %g %% (%s); shadow mismatches so far %d\n",
		p.name+":", p.requests, p.share("v1"), p.share("v2"), p.failed, p.weight, p.state, p.mismatches)
	if p.errors > 0 {
		fmt.Fprintf(out, "%-42s %4d of the failed got no answer, the first: %s\n", "", p.errors, p.firstError)
	}
}

// batch sends o.requests requests to the shop over o.workers clients, or fewer if stop
// (which may be nil) reports true, and counts who answered.
func (m *mesh) batch(ctx context.Context, name string, fileWeight float64, o options, stop func() bool) (phase, error) {
	client := &http.Client{Transport: m.tr}
	var (
		next, sent atomic.Int64
		mu         sync.Mutex
		p          = phase{name: name, fileWeight: fileWeight, served: map[string]int{}}
		firstErr   error
		wg         sync.WaitGroup
	)
	for range o.workers {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(o.requests) && (stop == nil || !stop()); n = next.Add(1) {
				version, ok, err := get(ctx, client, n)
				sent.Add(1)
				mu.Lock()
				switch {
				case err != nil && ctx.Err() != nil && firstErr == nil:
					firstErr = err
				case err != nil:
					p.errors++
					p.firstError = cmp.Or(p.firstError, err.Error())
				default:
					p.served[version]++
				}
				if !ok {
					p.failed++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return p, firstErr
	}
	p.requests = int(sent.Load())
	return m.observe(ctx, p)
}

// observe completes p with the canary's state and the shadow's mismatches.
func (m *mesh) observe(ctx context.Context, p phase) (phase, error) {
	cs, err := m.canary()
	if err != nil {
		return p, err
	}
	p.weight, p.state = cs.Weight, cs.Analysis
	p.mismatches = m.mismatches()
	return p, nil
}

// get asks the shop for item n and returns the version that answered, and whether it
// answered 200. The body is read to the end, so that the shadow comparison sees all of it.
func get(ctx context.Context, client *http.Client, n int64) (version string, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/item/%d", service, n), nil)
	if err != nil {
		return "", false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)); err != nil {
		return "", false, err
	}
	return resp.Header.Get(versionHeader), resp.StatusCode == http.StatusOK, nil
}
