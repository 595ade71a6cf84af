package middleware_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// gatewayKind is the transport a gateway test runs over.
type gatewayKind struct {
	name string
	mesh bool
}

var gatewayKinds = []gatewayKind{{"plain", false}, {"mesh", true}}

// startGateway serves backend on loopback and a gateway to it (service "web") over an
// http.Transport or a mesh Transport that resolves "web" to the backend (and "admin" to
// another server, which no test should reach).
func startGateway(t *testing.T, k gatewayKind, backend http.Handler, cfg middleware.GatewayConfig, opts ...middleware.HandlerOption) (gw, be *httptest.Server) {
	t.Helper()
	be = httptest.NewServer(backend)
	t.Cleanup(be.Close)
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		t.Error("the admin service was reached")
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(admin.Close)
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	var rt http.RoundTripper = base
	cfg.Service = "web"
	if k.mesh {
		res := discovery.MustNewStatic(map[string][]discovery.Endpoint{
			"web": {{Addr: be.Listener.Addr().String()}}, "admin": {{Addr: admin.Listener.Addr().String()}},
		})
		tr, err := middleware.NewTransport(base, middleware.WithResolver(res))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		rt = tr
	} else {
		cfg.Service = be.Listener.Addr().String()
	}
	h, err := middleware.NewGateway(rt, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	gw = httptest.NewServer(h)
	t.Cleanup(gw.Close)
	return gw, be
}

// echoHeaders answers with the request's Host and headers as JSON.
var echoHeaders = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := r.Header.Clone()
	h.Set("Host", r.Host)
	_ = json.NewEncoder(w).Encode(h)
})

func getJSON(t *testing.T, url string, hdr http.Header, host string) http.Header {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header = hdr
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got http.Header
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestGatewayForwardedHeaders checks the forwarding headers: an untrusted caller's
// X-Forwarded-For is replaced by its address (not appended to), its X-Forwarded-Host,
// -Proto, Forwarded and X-Real-Ip replaced or removed; a trusted proxy's are kept and its
// address appended. Hop-by-hop headers never reach the service, and the Host a caller sends
// does not choose the service: the service sees its own name.
func TestGatewayForwardedHeaders(t *testing.T) {
	spoofed := func() http.Header {
		return http.Header{
			"X-Forwarded-For":   {"6.6.6.6", "7.7.7.7"},
			"X-Forwarded-Host":  {"spoofed.example"},
			"X-Forwarded-Proto": {"https"},
			"X-Real-Ip":         {"6.6.6.6"},
			"True-Client-Ip":    {"6.6.6.6"},
			"X-Forwarded-Port":  {"443"},
			"Forwarded":         {"for=6.6.6.6"},
			"Connection":        {"X-Hop"},
			"X-Hop":             {"secret"},
			"Keep-Alive":        {"timeout=5"},
			"Proxy-Connection":  {"keep-alive"},
			"X-Kept":            {"1"},
		}
	}
	for _, k := range gatewayKinds {
		t.Run(k.name, func(t *testing.T) {
			gw, be := startGateway(t, k, echoHeaders, middleware.GatewayConfig{})
			got := getJSON(t, gw.URL+"/x", spoofed(), "admin")
			service := "web" // the Host of a request to the service: never the caller's
			if !k.mesh {
				service = be.Listener.Addr().String()
			}
			want := map[string][]string{
				"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Host": {"admin"}, "X-Forwarded-Proto": {"http"},
				"X-Real-Ip": nil, "True-Client-Ip": nil, "X-Forwarded-Port": nil, "Forwarded": nil, "X-Hop": nil, "Keep-Alive": nil, "Proxy-Connection": nil,
				"X-Kept": {"1"}, "Host": {service},
			}
			for h, v := range want {
				if fmt.Sprint(got[h]) != fmt.Sprint(v) {
					t.Errorf("untrusted caller: service saw %s = %q, want %q", h, got[h], v)
				}
			}

			trusted := middleware.GatewayConfig{Trust: route.TrustPrefixes(netip.MustParsePrefix("127.0.0.0/8"))}
			gw, _ = startGateway(t, k, echoHeaders, trusted)
			got = getJSON(t, gw.URL+"/x", spoofed(), "public.example")
			want = map[string][]string{
				"X-Forwarded-For": {"6.6.6.6, 7.7.7.7, 127.0.0.1"}, "X-Forwarded-Host": {"spoofed.example"},
				"X-Forwarded-Proto": {"https"}, "X-Forwarded-Port": {"443"}, "X-Hop": nil,
			}
			for h, v := range want {
				if fmt.Sprint(got[h]) != fmt.Sprint(v) {
					t.Errorf("trusted proxy: service saw %s = %q, want %q", h, got[h], v)
				}
			}
		})
	}
}

// TestGatewayBodyLimit checks a body over the limit through the gateway: 413, and the service
// gets nothing past the limit (with a Content-Length, nothing at all).
func TestGatewayBodyLimit(t *testing.T) {
	for _, k := range gatewayKinds {
		t.Run(k.name, func(t *testing.T) {
			backend := &bodyReader{}
			var clHits atomic.Int64
			mux := http.NewServeMux()
			mux.Handle("/up", backend)
			mux.HandleFunc("/cl", func(http.ResponseWriter, *http.Request) { clHits.Add(1) })
			gw, be := startGateway(t, k, mux, middleware.GatewayConfig{}, middleware.WithMaxRequestBody(bodyLimit))
			head := "POST /up HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n"
			resp := rawPost(t, gw.Listener.Addr().String(), head, writeChunks(16*bodyLimit, 8<<10))
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("chunked: status %d, want 413", resp.StatusCode)
			}
			head = fmt.Sprintf("POST /cl HTTP/1.1\r\nHost: edge\r\nContent-Length: %d\r\n\r\n", 2*bodyLimit)
			resp = rawPost(t, gw.Listener.Addr().String(), head, nil)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("Content-Length over: status %d, want 413", resp.StatusCode)
			}
			gw.Close() // waits for the requests in flight
			be.Close() // and the service's: it has seen all it will
			if got := backend.got.Load(); got > bodyLimit {
				t.Errorf("the service read %d bytes, more than the limit %d", got, bodyLimit)
			}
			if n := clHits.Load(); n != 0 {
				t.Errorf("Content-Length over: the service was called %d times", n)
			}
		})
	}
}

// TestGatewaySSE checks that a server-sent-events stream comes through the gateway event by
// event: the service sends the second event only after the client has read the first, so a
// gateway that buffered would fail the test on its deadline.
func TestGatewaySSE(t *testing.T) {
	for _, k := range gatewayKinds {
		t.Run(k.name, func(t *testing.T) {
			next := make(chan struct{})
			backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				rc := http.NewResponseController(w)
				for i := 1; i <= 3; i++ {
					_, _ = fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
					_ = rc.Flush()
					select {
					case <-next:
					case <-r.Context().Done():
						return
					}
				}
			})
			gw, _ := startGateway(t, k, backend, middleware.GatewayConfig{}, edgeStages(t)...)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.URL+"/events", nil)
			req.Header.Set("Origin", "https://app.example.com")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || resp.Header.Get("X-Edge") != "1" {
				t.Errorf("edge headers missing: %v", resp.Header)
			}
			br := bufio.NewReader(resp.Body)
			for i := 1; i <= 3; i++ {
				want := fmt.Sprintf("data: event %d", i)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("event %d: %v (the gateway held the stream)", i, err)
					}
					if strings.TrimSpace(line) == want {
						break
					}
				}
				next <- struct{}{}
			}
		})
	}
}

// edgeStages are the edge options a gateway test runs with: CORS, a body limit, and a route
// that adds a response header.
func edgeStages(t *testing.T) []middleware.HandlerOption {
	router, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Edge: &route.Edge{ResponseHeaders: route.HeaderRewrite{Set: map[string]string{"X-Edge": "1"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return []middleware.HandlerOption{
		middleware.WithCORS(middleware.CORSConfig{AllowedOrigins: []string{"https://app.example.com"}}),
		middleware.WithMaxRequestBody(bodyLimit),
		middleware.WithEdgeRoutes(router),
	}
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsEcho is a WebSocket echo service written by hand (RFC 6455: the handshake by Hijack, then
// frames echoed back unmasked until a close frame).
var wsEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-Websocket-Key") == "" {
		http.Error(w, "not a websocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(r.Header.Get("Sec-Websocket-Key")))
	if brw.Flush() != nil {
		return
	}
	for {
		op, payload, err := wsRead(brw.Reader)
		if err != nil {
			return
		}
		if wsWrite(conn, op, payload, false) != nil || op == 0x8 {
			return
		}
	}
})

// wsWrite writes one final frame; a client's is masked.
func wsWrite(w io.Writer, op byte, payload []byte, mask bool) error {
	hdr := []byte{0x80 | op}
	mbit := byte(0)
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, mbit|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, mbit|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, mbit|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	body := append([]byte(nil), payload...)
	if mask {
		var key [4]byte
		_, _ = rand.Read(key[:])
		hdr = append(hdr, key[:]...)
		for i := range body {
			body[i] ^= key[i%4]
		}
	}
	_, err := w.Write(append(hdr, body...))
	return err
}

// wsRead reads one frame (of at most 1 MiB), unmasking it.
func wsRead(r io.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, errors.New("frame too large")
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, payload, nil
}

// TestGatewayWebSocket checks a WebSocket through the gateway, edge stages on: the handshake
// answered 101 with the service's Sec-WebSocket-Accept, then messages both ways over the
// switched connection, then a clean close.
func TestGatewayWebSocket(t *testing.T) {
	for _, k := range gatewayKinds {
		t.Run(k.name, func(t *testing.T) {
			gw, _ := startGateway(t, k, wsEcho, middleware.GatewayConfig{}, edgeStages(t)...)
			conn, err := net.DialTimeout("tcp", gw.Listener.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			var keyb [16]byte
			_, _ = rand.Read(keyb[:])
			key := base64.StdEncoding.EncodeToString(keyb[:])
			_, _ = fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: edge\r\nOrigin: https://app.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != wsAccept(key) {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				t.Fatalf("handshake: status %d, accept %q, body %q", resp.StatusCode, resp.Header.Get("Sec-Websocket-Accept"), body)
			}
			for i, msg := range []string{"hello", strings.Repeat("x", 300), strings.Repeat("y", 70000)} {
				if err := wsWrite(conn, 0x1, []byte(msg), true); err != nil {
					t.Fatal(err)
				}
				op, got, err := wsRead(br)
				if err != nil || op != 0x1 || string(got) != msg {
					t.Fatalf("message %d: op %d, %d bytes, err %v", i, op, len(got), err)
				}
			}
			if err := wsWrite(conn, 0x8, []byte{0x03, 0xe8}, true); err != nil {
				t.Fatal(err)
			}
			if op, _, err := wsRead(br); err != nil || op != 0x8 {
				t.Fatalf("close: op %d, err %v", op, err)
			}
		})
	}
}

// TestGatewayErrors checks the gateway's answers when the transport fails: 503 for a service
// without endpoints, 502 for one that refuses connections.
func TestGatewayErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	res := discovery.MustNewStatic(map[string][]discovery.Endpoint{"empty": {}, "dead": {{Addr: dead}}})
	tr, err := middleware.NewTransport(&http.Transport{}, middleware.WithResolver(res), middleware.WithRetry(middleware.RetryPolicy{Disable: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var served atomic.Int64
	for service, want := range map[string]int{"empty": http.StatusServiceUnavailable, "dead": http.StatusBadGateway} {
		h, err := middleware.NewGateway(tr, middleware.GatewayConfig{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://edge/", nil))
		if rec.Code != want {
			t.Errorf("service %s: status %d, want %d", service, rec.Code, want)
		}
		served.Add(1)
	}
	for _, cfg := range []middleware.GatewayConfig{{}, {Service: "http://web"}, {Service: "web", Scheme: "ftp"}} {
		if _, err := middleware.NewGateway(tr, cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := middleware.NewGateway(nil, middleware.GatewayConfig{Service: "web"}); err == nil {
		t.Error("nil transport accepted")
	}
}

// TestGatewayCORSOwnsHeaders checks that with WithCORS the gateway's policy is the only one a
// browser sees: an upstream's permissive CORS headers are removed, so a refused origin gets
// none and an allowed one gets exactly the gateway's.
func TestGatewayCORSOwnsHeaders(t *testing.T) {
	permissive := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Access-Control-Expose-Headers", "X-Secret")
		_, _ = io.WriteString(w, "ok")
	})
	for _, k := range gatewayKinds {
		t.Run(k.name, func(t *testing.T) {
			gw, _ := startGateway(t, k, permissive, middleware.GatewayConfig{},
				middleware.WithCORS(middleware.CORSConfig{AllowedOrigins: []string{"https://app.example.com"}}))
			for origin, want := range map[string][]string{"https://evil.example": nil, "https://app.example.com": {"https://app.example.com"}} {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.URL+"/", nil)
				req.Header.Set("Origin", origin)
				resp, err := http.DefaultClient.Do(req)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if got := resp.Header.Values("Access-Control-Allow-Origin"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("origin %s: Allow-Origin %q, want %q", origin, got, want)
				}
				if got := resp.Header.Get("Access-Control-Allow-Credentials") + resp.Header.Get("Access-Control-Expose-Headers"); got != "" {
					t.Errorf("origin %s: the upstream's CORS headers came through: %q", origin, got)
				}
			}
		})
	}
}

// TestGatewayCanaryTrust checks that the mesh's trust predicate judges the gateway's caller:
// a canary pin in a header from a caller the route table does not trust is ignored (the
// request goes to the stable side), and honoured for a trusted one.
func TestGatewayCanaryTrust(t *testing.T) {
	answer := func(s string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, s) }))
		t.Cleanup(srv.Close)
		return srv
	}
	stable, canary := answer("stable"), answer("canary")
	res := discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"web": {{Addr: stable.Listener.Addr().String()}}, "web-canary": {{Addr: canary.Listener.Addr().String()}},
	})
	cfg := route.Config{Routes: []route.RouteConfig{{Canary: &route.Canary{
		Stable: route.Destination{Service: "web"}, Canary: route.Destination{Service: "web-canary"},
		Override: &route.CanaryOverride{Header: "X-Canary"},
	}}}}
	for _, tc := range []struct {
		name, trusted, want string
	}{{"untrusted caller", "10.0.0.0/8", "stable"}, {"trusted caller", "127.0.0.0/8", "canary"}} {
		t.Run(tc.name, func(t *testing.T) {
			routes, err := route.NewRouter(cfg, route.WithTrust(route.TrustPrefixes(netip.MustParsePrefix(tc.trusted))))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := middleware.NewTransport(&http.Transport{}, middleware.WithResolver(res), middleware.WithRoutes(routes))
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			h, err := middleware.NewGateway(tr, middleware.GatewayConfig{Service: "web"})
			if err != nil {
				t.Fatal(err)
			}
			gw := httptest.NewServer(h)
			defer gw.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.URL+"/", nil)
			req.Header.Set("X-Canary", "canary")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			_ = resp.Body.Close()
			if string(body) != tc.want {
				t.Errorf("pinned to the canary by a header: served by %q, want %q", body, tc.want)
			}
		})
	}
}

// TestGatewayHTTP2 checks the gateway served over TLS with HTTP/2: X-Forwarded-Proto is
// "https", and a streamed body of unknown length over the limit is answered 413 with the
// service reading nothing past the limit (HTTP/2 resets the stream; no connection is taken).
func TestGatewayHTTP2(t *testing.T) {
	backend := &bodyReader{}
	mux := http.NewServeMux()
	mux.Handle("/up", backend)
	mux.Handle("/", echoHeaders)
	be := httptest.NewServer(mux)
	defer be.Close()
	h, err := middleware.NewGateway(&http.Transport{}, middleware.GatewayConfig{Service: be.Listener.Addr().String()}, middleware.WithMaxRequestBody(bodyLimit))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewUnstartedServer(h)
	gw.EnableHTTP2 = true
	gw.StartTLS()
	defer gw.Close()
	client := gw.Client()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.URL+"/", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got http.Header
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&got)
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 || got.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("proto %s, X-Forwarded-Proto %q: want HTTP/2 and https", resp.Proto, got.Get("X-Forwarded-Proto"))
	}

	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 8<<10)
		for sent := 0; sent < 16*bodyLimit; sent += len(chunk) {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	defer pr.Close()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, gw.URL+"/up", pr)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("streamed body over the limit: status %d, want 413", resp.StatusCode)
	}
	gw.Close()
	be.Close()
	if n := backend.got.Load(); n > bodyLimit {
		t.Errorf("the service read %d bytes, more than the limit %d", n, bodyLimit)
	}
}
