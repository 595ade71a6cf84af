package balancer

// This file holds the only use of net/http in package balancer: the HTTP prober of active
// health checks.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
)

// newHTTPProber returns a prober that GETs cfg.Path on an endpoint and passes on a 2xx
// answer, and a function that closes its idle connections. Redirects are not followed.
func newHTTPProber(cfg HealthCheck) (prober, func()) {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       2 * cfg.Interval,
		ResponseHeaderTimeout: cfg.Timeout,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	probe := func(ctx context.Context, addr string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Scheme+"://"+addr+cfg.Path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "proxyless-healthcheck")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("balancer: health check of %s: status %d", addr, resp.StatusCode)
		}
		return nil
	}
	return probe, tr.CloseIdleConnections
}
