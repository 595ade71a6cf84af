package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	ibackoff "github.com/proxyless/proxyless/internal/backoff"
)

// remoteKeys keeps an issuer's keys from a JWKS URL. One goroutine does every fetch, so
// fetches are single-flight by construction: on a schedule (Refresh.Interval, sooner with
// backoff after failures) and on demand when a token names an unknown kid, but on demand at
// most once per Refresh.MinInterval. A failed fetch keeps the last good keys until they are
// older than Refresh.MaxStaleness.
type remoteKeys struct {
	url      string       // immutable
	client   *http.Client // immutable
	cfg      Refresh      // immutable, defaults filled
	logger   *slog.Logger // immutable; may be nil
	snap     atomic.Pointer[keySet]
	trigger  chan struct{} // capacity 1
	closed   chan struct{} // closed by close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	fetchesN atomic.Int64

	mu          sync.Mutex
	pending     bool          // guarded by mu: a fetch is requested or running
	lastAttempt time.Time     // guarded by mu: start of the last fetch
	done        chan struct{} // guarded by mu: closed when the pending fetch ends
}

func newRemoteKeys(rawURL string, client *http.Client, cfg Refresh, logger *slog.Logger) *remoteKeys {
	ctx, cancel := context.WithCancel(context.Background())
	r := &remoteKeys{
		url:     rawURL,
		client:  client,
		cfg:     cfg,
		logger:  logger,
		trigger: make(chan struct{}, 1),
		closed:  make(chan struct{}),
		cancel:  cancel,
		pending: true, // the first fetch starts at once
		done:    make(chan struct{}),
	}
	r.wg.Add(1)
	go r.run(ctx)
	return r
}

func (r *remoteKeys) close() {
	r.cancel()
	r.wg.Wait()
}

func (r *remoteKeys) run(ctx context.Context) {
	defer r.wg.Done()
	defer close(r.closed)
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.trigger:
		}
		r.mu.Lock()
		r.pending = true
		r.lastAttempt = time.Now()
		r.mu.Unlock()
		select {
		case <-r.trigger: // a request made before this fetch began is served by it
		default:
		}

		err := r.fetch(ctx)

		r.mu.Lock()
		r.pending = false
		close(r.done)
		r.done = make(chan struct{})
		r.mu.Unlock()

		next := r.cfg.Interval
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			if r.logger != nil {
				r.logger.Warn("auth: jwks refresh failed", "error", err, "failures", failures)
			}
			next = backoff(r.cfg.MinInterval, failures, r.cfg.Interval)
		} else {
			failures = 0
		}
		timer.Reset(next)
	}
}

// backoff returns base·2^(n-1), capped, plus up to half of it as jitter; never below base,
// so scheduled retries also respect the minimum interval.
func backoff(base time.Duration, n int, limit time.Duration) time.Duration {
	d := ibackoff.Exponential(base, max(limit, base), n)
	return d + rand.N(d/2+1)
}

func (r *remoteKeys) fetch(ctx context.Context) error {
	r.fetchesN.Add(1)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := r.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL: it may carry credentials
		}
		return fmt.Errorf("auth: jwks fetch: %w", err)
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth: jwks fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.cfg.MaxBytes+1))
	if err != nil {
		return fmt.Errorf("auth: jwks fetch: %w", err)
	}
	if int64(len(body)) > r.cfg.MaxBytes {
		return errors.New("auth: jwks fetch: body too large")
	}
	set, err := parseJWKS(body, false, time.Now())
	if err != nil {
		return err
	}
	r.snap.Store(set)
	return nil
}

// keys returns the keys that may verify a token with kid and alg, waiting (bounded by ctx) for
// a fetch when the kid is unknown or no fresh keys are held and a fetch is allowed or already
// under way.
func (r *remoteKeys) keys(ctx context.Context, kid, alg string) ([]verKey, error) {
	fresh := false
	for attempt := 0; ; attempt++ {
		s := r.snap.Load()
		fresh = s != nil && time.Since(s.loaded) <= r.cfg.MaxStaleness
		if fresh {
			if ks := s.lookup(kid, alg); len(ks) > 0 {
				return ks, nil
			}
		}
		if attempt == 1 {
			break
		}
		r.mu.Lock()
		if !r.pending {
			if time.Since(r.lastAttempt) < r.cfg.MinInterval {
				r.mu.Unlock()
				break
			}
			r.pending = true
			select {
			case r.trigger <- struct{}{}:
			default:
			}
		}
		done := r.done
		r.mu.Unlock()
		select {
		case <-done:
		case <-r.closed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !fresh {
		return nil, ErrKeysUnavailable
	}
	return nil, ErrUnknownKey
}
