package dns_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery/dns"
	"github.com/proxyless/proxyless/internal/faultbackend"
	"github.com/proxyless/proxyless/middleware"
)

func TestNameTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl, service, want string
	}{
		{"", "payments.service.consul.", "payments.service.consul."},
		{"{service}", "payments", "payments"},
		{"{service}.service.consul.", "payments", "payments.service.consul."},
		{"_http._tcp.{service}.example.internal", "payments", "_http._tcp.payments.example.internal"},
		{"_grpc._tcp.{service}", "orders", "_grpc._tcp.orders"},
	} {
		r, err := dns.New(dns.Config{NameTemplate: tc.tmpl})
		require.NoError(t, err, tc.tmpl)
		got, err := r.SRVName(tc.service)
		require.NoError(t, err, tc.tmpl)
		assert.Equal(t, tc.want, got, tc.tmpl)
	}
	for _, tc := range []struct{ tmpl, want string }{
		{"payments.service.consul", "must contain {service}"},
		{"{service}.{service}.consul", "once"},
		{"{service}.consul}", "no other brace"},
		{"{Service}.consul", "must contain {service}"},
		{"x{service}.consul", "whole label"},
		{"{service}x.consul", "whole label"},
		{"{service}..consul", "empty label"},
		{"{service}.bad name", "invalid character"},
		{"{service}." + strings.Repeat("a", 300), "over"},
	} {
		_, err := dns.New(dns.Config{NameTemplate: tc.tmpl})
		require.Error(t, err, tc.tmpl)
		assert.Contains(t, err.Error(), "dns: Config.NameTemplate", tc.tmpl)
		assert.Contains(t, err.Error(), tc.want, tc.tmpl)
	}
	// A service that makes an invalid name is refused by Watch.
	r, err := dns.New(dns.Config{NameTemplate: "{service}.service.consul."})
	require.NoError(t, err)
	for _, bad := range []string{"", "a b", "x..y", "-x", strings.Repeat("a", 64)} {
		_, err := r.Watch(context.Background(), bad)
		require.Error(t, err, bad)
	}
}

func FuzzParseNameTemplate(f *testing.F) {
	for _, s := range []string{"", "{service}", "{service}.service.consul.", "_http._tcp.{service}.example.internal", "{service}{service}", "}{", "{service}..", "x{service}"} {
		f.Add(s, "payments")
	}
	f.Fuzz(func(t *testing.T, tmpl, service string) {
		prefix, suffix, err := dns.ParseNameTemplate(tmpl)
		if err != nil {
			return
		}
		if tmpl != "" && prefix+"{service}"+suffix != tmpl {
			t.Fatalf("ParseNameTemplate(%q) = %q, %q", tmpl, prefix, suffix)
		}
		r, err := dns.New(dns.Config{NameTemplate: tmpl})
		if err != nil {
			t.Fatalf("New refused a template ParseNameTemplate accepted: %v", err)
		}
		if name, err := r.SRVName(service); err == nil && !strings.Contains(name, service) {
			t.Fatalf("SRVName(%q) = %q", service, name)
		}
	})
}

// The DNS resolver on its own, as the transport's resolver: http://search/ reaches the
// loopback HTTP servers registered in Consul as "search", found through the agent's DNS
// interface by the name template.
func TestTemplateResolverWithTransport(t *testing.T) {
	a := shared.Agent(t)
	b1, b2 := faultbackend.New(t), faultbackend.New(t)
	for _, b := range []*faultbackend.Backend{b1, b2} {
		_, port := splitPort(t, b.Addr())
		t.Cleanup(registerAt(t, a, "dnsweb", port))
	}
	r, err := dns.New(dns.Config{Server: a.DNSAddr, NameTemplate: "{service}.service.consul.", Interval: 100 * time.Millisecond, Timeout: time.Second})
	require.NoError(t, err)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr, err := middleware.NewTransport(base, middleware.WithResolver(r), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	require.NoError(t, err)
	defer tr.Close()
	client := &http.Client{Transport: tr}

	// Registration reaches the DNS answers shortly: wait until both endpoints are known.
	deadline := time.Now().Add(10 * time.Second)
	for len(tr.Endpoints("dnsweb")) < 2 && time.Now().Before(deadline) {
		get(t, client, "http://dnsweb/")
		time.Sleep(20 * time.Millisecond)
	}
	require.Len(t, tr.Endpoints("dnsweb"), 2)
	before := b1.Attempts() + b2.Attempts()
	const n = 40
	for range n {
		assert.Equal(t, http.StatusOK, get(t, client, "http://dnsweb/"))
	}
	assert.Equal(t, int64(n), b1.Attempts()+b2.Attempts()-before, "every request reached a registered server")
	assert.Positive(t, b1.Attempts())
	assert.Positive(t, b2.Attempts())
}

func get(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func splitPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	port, err := strconv.Atoi(p)
	require.NoError(t, err)
	return host, port
}
