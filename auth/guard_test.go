package auth_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/proxyless/proxyless/auth"
)

func staticValidator(t *testing.T) *auth.Validator {
	t.Helper()
	testKeys(t)
	v, err := auth.NewValidator([]auth.Issuer{{Issuer: issA, Audiences: []string{aud}, Algorithms: []string{"ES256"}, Keys: []auth.Key{{ID: "ec-1", Key: ecKey1.Public()}}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v
}

func TestTokenSourceFromRequest(t *testing.T) {
	cases := []struct {
		name   string
		src    auth.TokenSource
		header map[string][]string
		want   string
		err    error
	}{
		{"bearer", auth.TokenSource{}, map[string][]string{"Authorization": {"Bearer abc"}}, "abc", nil},
		{"scheme case", auth.TokenSource{}, map[string][]string{"Authorization": {"bEaReR  abc"}}, "abc", nil},
		{"missing", auth.TokenSource{}, nil, "", auth.ErrMissingToken},
		{"empty bearer", auth.TokenSource{}, map[string][]string{"Authorization": {"Bearer "}}, "", auth.ErrInvalidToken},
		{"basic", auth.TokenSource{}, map[string][]string{"Authorization": {"Basic dXNlcjpwdw=="}}, "", auth.ErrInvalidToken},
		{"two headers", auth.TokenSource{}, map[string][]string{"Authorization": {"Bearer a", "Bearer b"}}, "", auth.ErrInvalidToken},
		{"oversized", auth.TokenSource{}, map[string][]string{"Authorization": {"Bearer " + strings.Repeat("a", 200)}}, "", auth.ErrTokenTooLarge},
		{"custom header raw", auth.TokenSource{Header: "X-Token"}, map[string][]string{"X-Token": {"abc"}}, "abc", nil},
		{"custom header bearer", auth.TokenSource{Header: "x-token"}, map[string][]string{"X-Token": {"Bearer abc"}}, "abc", nil},
		{"cookie", auth.TokenSource{Cookie: "session"}, map[string][]string{"Cookie": {"a=1; session=tok"}}, "tok", nil},
		{"header wins over cookie", auth.TokenSource{Cookie: "session"}, map[string][]string{"Cookie": {"session=tok"}, "Authorization": {"Bearer h"}}, "h", nil},
		{"two cookies", auth.TokenSource{Cookie: "session"}, map[string][]string{"Cookie": {"session=a; session=b"}}, "", auth.ErrInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for k, vs := range tc.header {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			got, err := tc.src.FromRequest(r, 100)
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	t.Run("metadata", func(t *testing.T) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer m"))
		got, err := auth.TokenSource{}.FromIncomingContext(ctx, 100)
		require.NoError(t, err)
		assert.Equal(t, "m", got)
		ctx = metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-jwt", "raw"))
		got, err = auth.TokenSource{Metadata: "X-JWT"}.FromIncomingContext(ctx, 100)
		require.NoError(t, err)
		assert.Equal(t, "raw", got)
		_, err = auth.TokenSource{}.FromIncomingContext(context.Background(), 100)
		assert.ErrorIs(t, err, auth.ErrMissingToken)
	})
}

func TestGuardHTTP(t *testing.T) {
	v := staticValidator(t)
	read := sign(t, jose.ES256, ecKey1, "ec-1", claimsFor(issA, aud), nil)
	c := claimsFor(issA, aud)
	c["scope"] = "admin"
	c["groups"] = []string{"ops", "dev"}
	admin := sign(t, jose.ES256, ecKey1, "ec-1", c, nil)

	var seen string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cl, ok := auth.ClaimsFromContext(r.Context())
		seen = "anonymous"
		if ok {
			seen = cl.Subject + ":" + strings.Join(cl.Scopes(), ",")
		}
		w.WriteHeader(http.StatusNoContent)
	})
	do := func(g *auth.Guard, tok string) *httptest.ResponseRecorder {
		seen = ""
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		g.Handler(next).ServeHTTP(rec, req)
		return rec
	}

	required, err := auth.NewGuard(v)
	require.NoError(t, err)
	rec := do(required, read)
	assert.Equal(t, http.StatusNoContent, rec.Code)
	assert.Equal(t, "user-1:read,write", seen)
	rec = do(required, "")
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Equal(t, "Bearer", rec.Header().Get("WWW-Authenticate"))
	assert.Empty(t, seen)

	optional, err := auth.NewGuard(v, auth.WithOptionalToken())
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, do(optional, "").Code)
	assert.Equal(t, "anonymous", seen)
	rec = do(optional, read+"x")
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "an invalid token fails even where optional")
	assert.Equal(t, `Bearer error="invalid_token"`, rec.Header().Get("WWW-Authenticate"))

	ruled, err := auth.NewGuard(v, auth.WithRule(auth.Rule{Scopes: []string{"admin"}, Claims: map[string][]string{"groups": {"ops"}}}))
	require.NoError(t, err)
	rec = do(ruled, read)
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Equal(t, `Bearer error="insufficient_scope"`, rec.Header().Get("WWW-Authenticate"))
	assert.Empty(t, seen)
	assert.Equal(t, http.StatusNoContent, do(ruled, admin).Code)

	optRuled, err := auth.NewGuard(v, auth.WithOptionalToken(), auth.WithRule(auth.Rule{Scopes: []string{"admin"}}))
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, do(optRuled, "").Code, "a rule needs a token even where tokens are optional")

	_, err = auth.NewGuard(nil)
	assert.Error(t, err)
	_, err = auth.NewGuard(v, auth.WithRule(auth.Rule{Scopes: []string{""}}))
	var ce *auth.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "Rule.Scopes[0]", ce.Field)
	_, err = auth.NewGuard(v, auth.WithMethodRules(map[string]auth.Rule{"Check": {}}))
	require.ErrorAs(t, err, &ce)
	_, err = auth.NewGuard(v, auth.WithTokenSource(auth.TokenSource{Header: "bad header"}))
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "TokenSource.Header", ce.Field)
}

// grpcServer serves the standard health service on loopback behind the given interceptors,
// with a recorder of the claims the handler saw.
func grpcServer(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(func() { hs.Shutdown(); s.Stop() })
	return lis.Addr().String()
}

func TestGuardGRPC(t *testing.T) {
	v := staticValidator(t)
	c := claimsFor(issA, aud)
	c["scope"] = "health.watch"
	watcher := sign(t, jose.ES256, ecKey1, "ec-1", c, nil)
	reader := sign(t, jose.ES256, ecKey1, "ec-1", claimsFor(issA, aud), nil)

	g, err := auth.NewGuard(v, auth.WithMethodRules(map[string]auth.Rule{
		"/grpc.health.v1.Health/Watch": {Scopes: []string{"health.watch"}},
	}))
	require.NoError(t, err)
	subjects := make(chan string, 10)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		subjects <- auth.SubjectFromContext(ctx)
		return h(ctx, req)
	}
	addr := grpcServer(t,
		grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor(), record),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()))

	dial := func(tok string) healthpb.HealthClient {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if tok != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(auth.PerRPCCredentials{Token: auth.StaticToken(tok), AllowInsecure: true}))
		}
		cc, err := grpc.NewClient(addr, opts...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = cc.Close() })
		return healthpb.NewHealthClient(cc)
	}
	ctx := ctxT(t)

	_, err = dial("").Check(ctx, &healthpb.HealthCheckRequest{})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Equal(t, "auth: unauthenticated", status.Convert(err).Message())
	_, err = dial("garbage").Check(ctx, &healthpb.HealthCheckRequest{})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))

	_, err = dial(reader).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, "user-1", <-subjects)

	watch := func(tok string) error {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := dial(tok).Watch(sctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	assert.Equal(t, codes.PermissionDenied, status.Code(watch(reader)))
	assert.Equal(t, codes.Unauthenticated, status.Code(watch("")))
	assert.NoError(t, watch(watcher))
}

func TestOutboundHTTP(t *testing.T) {
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
	}))
	defer srv.Close()
	base := srv.Client().Transport

	tr, err := auth.NewTransport(base, auth.StaticToken("s3cret"))
	require.NoError(t, err)
	client := &http.Client{Transport: tr}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, "Bearer s3cret", <-got)

	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, []byte("one\n"))
	tf, err := auth.NewTokenFile(path, 10*time.Millisecond)
	require.NoError(t, err)
	tr, err = auth.NewTransport(base, tf.Token)
	require.NoError(t, err)
	client = &http.Client{Transport: tr}
	resp, err = client.Get(srv.URL)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, "Bearer one", <-got)
	writeFile(t, path, []byte("two"))
	eventually(t, 5*time.Second, func() bool { s, _ := tf.Token(context.Background()); return s == "two" }, "token file re-read")
	resp, err = client.Get(srv.URL)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, "Bearer two", <-got)
	writeFile(t, path, []byte("  \n"))
	time.Sleep(30 * time.Millisecond) // a few intervals: the empty file must not replace the token
	s, _ := tf.Token(context.Background())
	assert.Equal(t, "two", s)

	// A failing callback fails the request before it leaves, closing the body.
	failing, err := auth.NewTransport(base, func(context.Context) (string, error) { return "", os.ErrPermission })
	require.NoError(t, err)
	body := &closeRecorder{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
	resp, err = failing.RoundTrip(req)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, os.ErrPermission)
	assert.True(t, body.closed)
	tr.CloseIdleConnections()
	srv.Client().CloseIdleConnections()

	_, err = auth.NewTransport(nil, nil)
	assert.Error(t, err)
	_, err = auth.NewTokenFile(filepath.Join(t.TempDir(), "missing"), 0)
	assert.Error(t, err)
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }
