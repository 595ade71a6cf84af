// Package auth secures proxyless traffic: it validates JWTs against keys from several issuers
// (remote JWKS with caching and rotation, watched JWKS files, static keys), authorizes requests
// by scopes and claim values, attaches outbound credentials, builds TLS configurations for
// termination and origination with certificate reload, and authorizes mTLS peers by SPIFFE ID
// and SAN.
//
// The core types are transport-agnostic: [Validator] turns a token string into [Claims];
// [Rule] decides on claims; [PeerPolicy] decides on a peer certificate. Adapters sit in clearly
// named files: [Guard] (guard.go, http.go, grpc.go) is the HTTP middleware and gRPC server
// interceptors around a Validator; [Transport] and [PerRPCCredentials] (credentials.go) attach
// tokens to outbound calls; [ServerTLS] and [ClientTLS] (tls.go) build *tls.Config values;
// [PeerAuthorizer] (peer.go) checks mTLS peers during the handshake and in HTTP and gRPC
// servers. [Consumers] (consumers.go) is an API gateway's registry of consumers: API keys
// (stored as SHA-256 hashes) and JWT subjects mapped to a consumer and its plan, reloadable
// from a file or Consul; middleware.WithConsumers applies the plans' routes and quotas.
//
// JWT signatures are checked by github.com/go-jose/go-jose/v4; this package only chooses which
// key may check which token, and never trusts key material or key locations carried by the
// token itself (jku, x5u, jwk, x5c headers are ignored).
package auth
