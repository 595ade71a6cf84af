package auth

import (
	"errors"
	"net/http"
)

// HTTP adapters.

// Handler returns next wrapped in token authentication and authorization. On success the
// verified claims are in the request context (ClaimsFromContext). A missing or invalid token
// answers 401 with "WWW-Authenticate: Bearer" (plus error="invalid_token" for a bad token); a
// failed rule answers 403 with error="insufficient_scope". Responses carry no detail of why.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := g.source.FromRequest(r, g.v.maxBytes)
		c, v, err := g.check(r.Context(), tok, err, g.rule)
		switch v {
		case allowed:
			if c != nil {
				r = r.WithContext(ContextWithClaims(r.Context(), c))
			}
			next.ServeHTTP(w, r)
		case forbidden:
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
			http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
		case canceled:
			// The client went away; nobody reads this.
			w.WriteHeader(http.StatusUnauthorized)
		default:
			if errors.Is(err, ErrMissingToken) {
				w.Header().Set("WWW-Authenticate", `Bearer`)
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
		}
	})
}

// Handler returns next wrapped in mTLS peer authorization: the request's verified client
// certificate must satisfy the policy, and its identity goes in the context (PeerFromContext).
// A request without a client certificate, or with a certificate the policy refuses, answers
// 403. Normally ServerTLS has already refused such peers in the handshake; this adapter is for
// servers whose TLS is configured elsewhere, and to expose the identity to handlers.
func (a *PeerAuthorizer) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
			return
		}
		p, err := a.Authorize(r.TLS.PeerCertificates[0])
		if err != nil {
			http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(ContextWithPeer(r.Context(), p)))
	})
}
