package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/middleware"
)

// scenario makes the calls and flips the intentions.
func (w *world) scenario(ctx context.Context, web *connect.Mesh, upstream string, out io.Writer) (summary, error) {
	var s summary
	tr, err := middleware.NewTransport(nil, middleware.WithMesh(web),
		middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	if err != nil {
		return s, err
	}
	defer tr.Close()
	webClient := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	// shop's client keeps one connection to its sidecar's upstream listener.
	shopTr := &http.Transport{MaxConnsPerHost: 1, Proxy: nil}
	defer shopTr.CloseIdleConnections()
	shopClient := &http.Client{Transport: shopTr, Timeout: 5 * time.Second}
	shopURL := "http://" + upstream + "/"

	// The sidecars' checks take a few seconds to pass; until then they are no mesh endpoints.
	body, err := waitFor(ctx, func() (int, string, error) { return get(ctx, webClient, "http://legacy/") })
	if err != nil {
		return s, fmt.Errorf("web -> legacy: %w", err)
	}
	s.webToLegacy = http.StatusOK
	fmt.Fprintf(out, "\nweb (proxyless) -> legacy (sidecar):             200 %q\n", body)
	if body, err = waitFor(ctx, func() (int, string, error) { return get(ctx, shopClient, shopURL) }); err != nil {
		return s, fmt.Errorf("shop -> payments: %w", err)
	}
	s.shopToPayments = http.StatusOK
	if _, id, ok := strings.Cut(body, ": hello "); ok {
		s.shopIdentity = id
	}
	fmt.Fprintf(out, "shop (sidecar) -> payments (proxyless):          200 %q\n", body)

	if err := w.flipShop(ctx, shopClient, shopURL, &s, out); err != nil {
		return s, err
	}
	if err := w.flipWeb(ctx, webClient, &s, out); err != nil {
		return s, err
	}
	return s, w.split(ctx, web, &s, out)
}

// flipShop denies shop => payments while shop's connection stays open, then allows it again.
func (w *world) flipShop(ctx context.Context, c *http.Client, url string, s *summary, out io.Writer) error {
	reused := true
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		reused = reused && i.Reused
	}})
	if err := w.intention("payments", "shop", api.IntentionActionDeny, out); err != nil {
		return err
	}
	start := time.Now()
	for code := 0; code != http.StatusForbidden; {
		if time.Since(start) > 10*time.Second {
			return errors.New("payments did not refuse shop after the deny")
		}
		var err error
		if code, _, err = get(tctx, c, url); err != nil {
			return err
		}
	}
	s.denyAfter, s.deniedOnOpenConn = time.Since(start), reused
	fmt.Fprintf(out, "shop -> payments on the connection opened before: 403 after %v (same connection: %v)\n",
		s.denyAfter.Round(time.Millisecond), reused)
	if err := w.intention("payments", "shop", api.IntentionActionAllow, out); err != nil {
		return err
	}
	_, err := waitFor(ctx, func() (int, string, error) { return get(tctx, c, url) })
	if err == nil {
		s.shopAgain = http.StatusOK
		fmt.Fprintf(out, "shop -> payments on the same connection:         200 (same connection: %v)\n", reused)
	}
	return err
}

// flipWeb denies web => legacy: the sidecar refuses web's new connections; then allows it.
func (w *world) flipWeb(ctx context.Context, c *http.Client, s *summary, out io.Writer) error {
	if err := w.intention("legacy", "web", api.IntentionActionDeny, out); err != nil {
		return err
	}
	start := time.Now()
	for !s.webRefusedBySidecar && time.Since(start) < 10*time.Second {
		c.CloseIdleConnections() // the built-in proxy authorizes connections, not requests
		_, _, err := get(ctx, c, "http://legacy/")
		s.webRefusedBySidecar = err != nil
		if err != nil {
			fmt.Fprintf(out, "web -> legacy, a new connection:                refused by the sidecar (%v)\n", shortErr(err))
		}
	}
	if !s.webRefusedBySidecar {
		return errors.New("legacy's sidecar did not refuse web after the deny")
	}
	if err := w.intention("legacy", "web", api.IntentionActionAllow, out); err != nil {
		return err
	}
	_, err := waitFor(ctx, func() (int, string, error) {
		c.CloseIdleConnections()
		return get(ctx, c, "http://legacy/")
	})
	if err == nil {
		s.webAgain = http.StatusOK
		fmt.Fprintf(out, "web -> legacy:                                   200\n")
	}
	return err
}

func (w *world) intention(dest, source string, action api.IntentionAction, out io.Writer) error {
	fmt.Fprintf(out, "intention %s => %s: %s\n", source, dest, action)
	_, _, err := w.client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: dest,
		Sources: []*api.SourceIntention{{Name: source, Action: action}},
	}, nil)
	return err
}

// waitFor calls f every 100 ms until it answers 200, and returns the body.
func waitFor(ctx context.Context, f func() (int, string, error)) (string, error) {
	for {
		code, body, err := f()
		if err == nil && code == http.StatusOK {
			return body, nil
		}
		if err == nil {
			err = fmt.Errorf("status %d", code)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), err
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
