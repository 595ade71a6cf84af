package middleware_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// TestGatewayUnderscoreForwardedHeaders checks that a caller cannot slip forwarding headers
// past the gateway under names spelled with '_' (X_Forwarded_For, x_real_ip): CGI, WSGI,
// Rack and PHP services read X-Forwarded-For and X_Forwarded_For as the same variable
// (HTTP_X_FORWARDED_FOR), so such a header would pass a forged client address. They are
// removed for untrusted callers and for trusted proxies alike (no proxy sends them).
func TestGatewayUnderscoreForwardedHeaders(t *testing.T) {
	forged := func() http.Header {
		return http.Header{
			"X_Forwarded_For":   {"6.6.6.6"},
			"x_forwarded_host":  {"spoofed.example"},
			"X-Forwarded_Proto": {"https"},
			"X_Real_Ip":         {"6.6.6.6"},
			"True_Client_IP":    {"6.6.6.6"},
			"X_Client_Ip":       {"6.6.6.6"},
			"X_Kept":            {"1"},
		}
	}
	isForwarding := func(name string) bool {
		n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		return strings.HasPrefix(n, "x-forwarded-") || n == "x-real-ip" || n == "true-client-ip" || n == "x-client-ip"
	}
	for _, k := range gatewayKinds {
		t.Run(k.name, func(t *testing.T) {
			for _, cfg := range []middleware.GatewayConfig{
				{},
				{Trust: route.TrustPrefixes(netip.MustParsePrefix("127.0.0.0/8"))},
			} {
				gw, _ := startGateway(t, k, echoHeaders, cfg)
				got := getJSON(t, gw.URL+"/x", forged(), "")
				for name, v := range got {
					if strings.Contains(name, "_") && isForwarding(name) {
						t.Errorf("trusted=%v: service saw %s = %q", cfg.Trust != nil, name, v)
					}
				}
				if got.Get("X_kept") != "1" {
					t.Errorf("trusted=%v: an ordinary header with '_' was dropped: %v", cfg.Trust != nil, got)
				}
				if got.Get("X-Forwarded-For") != "127.0.0.1" {
					t.Errorf("trusted=%v: X-Forwarded-For = %q, want the caller's address", cfg.Trust != nil, got["X-Forwarded-For"])
				}
			}
		})
	}
}
