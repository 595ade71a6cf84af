package balancer

// This file holds the only use of net/http in package balancer: the HTTP and TCP probers of
// active health checks.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
)

// httpProber GETs the configured path on an endpoint and passes on an expected status.
// Redirects are not followed.
type httpProber struct {
	cfg    HealthCheck
	tr     *http.Transport
	client *http.Client
}

func newHTTPProber(cfg HealthCheck) (Prober, error) {
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
	return &httpProber{cfg: cfg, tr: tr, client: client}, nil
}

func (p *httpProber) Probe(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.Scheme+"://"+addr+p.cfg.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "proxyless-healthcheck")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	for _, r := range p.cfg.ExpectedStatuses {
		if r.Start <= resp.StatusCode && resp.StatusCode < r.End {
			return nil
		}
	}
	return fmt.Errorf("balancer: health check of %s: status %d", addr, resp.StatusCode)
}

func (p *httpProber) Close() error {
	p.tr.CloseIdleConnections()
	return nil
}

// tcpProber passes when a TCP connection to the endpoint opens; it closes it at once.
type tcpProber struct{ d net.Dialer }

func newTCPProber(HealthCheck) (Prober, error) { return &tcpProber{}, nil }

func (p *tcpProber) Probe(ctx context.Context, addr string) error {
	c, err := p.d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func (p *tcpProber) Close() error { return nil }
