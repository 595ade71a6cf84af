package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Key is a verification key given directly in an [Issuer].
type Key struct {
	// ID is the key ID (kid) tokens name. It may be empty when the issuer has a single key
	// usable with the token's algorithm.
	ID string
	// Algorithm, when set, restricts the key to that one algorithm (e.g. "ES256"). When empty,
	// the key is usable with the algorithms of its own family only (RSA keys with RS*/PS*,
	// P-256 keys with ES256, Ed25519 keys with EdDSA, secrets with HS*).
	Algorithm string
	// Key is an *rsa.PublicKey (at least 2048 bits), *ecdsa.PublicKey, ed25519.PublicKey, or a
	// []byte HMAC secret (at least as long as the hash output). Private keys are refused.
	Key any
}

// verKey is a key the validator may use; immutable.
type verKey struct {
	kid string
	alg string // "" means: any algorithm of the key's family
	key any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte
}

// supportedAlgs lists the algorithms an issuer may allow. "none" is not among them.
var supportedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
	"HS256": true, "HS384": true, "HS512": true,
}

func isHMAC(alg string) bool { return alg == "HS256" || alg == "HS384" || alg == "HS512" }

// keyFitsAlg reports whether key k may verify a token signed with alg: the key's own
// algorithm restriction holds and the key belongs to the algorithm's family. This is what
// stops, for example, an HS256 token being checked with an RSA public key's bytes.
func keyFitsAlg(k verKey, alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := k.key.(*rsa.PublicKey)
		return ok
	case "ES256", "ES384", "ES512":
		pk, ok := k.key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		switch alg {
		case "ES256":
			return pk.Curve == elliptic.P256()
		case "ES384":
			return pk.Curve == elliptic.P384()
		default:
			return pk.Curve == elliptic.P521()
		}
	case "EdDSA":
		_, ok := k.key.(ed25519.PublicKey)
		return ok
	case "HS256", "HS384", "HS512":
		b, ok := k.key.([]byte)
		need := 32
		switch alg {
		case "HS384":
			need = 48
		case "HS512":
			need = 64
		}
		return ok && len(b) >= need
	}
	return false
}

// checkKey normalises and checks one key's material.
func checkKey(key any, allowSecret bool) (any, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.N.BitLen() < 2048 {
			return nil, errors.New("RSA key shorter than 2048 bits")
		}
		return k, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return nil, errors.New("empty ECDSA key")
		}
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, errors.New("unsupported curve")
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key size")
		}
		return k, nil
	case []byte:
		if !allowSecret {
			return nil, errors.New("symmetric keys are not accepted from this source")
		}
		if len(k) < 32 {
			return nil, errors.New("HMAC secret shorter than 32 bytes")
		}
		return append([]byte(nil), k...), nil
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
}

// keySet is an immutable set of keys with the time it was loaded.
type keySet struct {
	byKid  map[string][]verKey
	all    []verKey
	loaded time.Time
}

const maxKeysPerSet = 100

func newKeySet(keys []verKey, loaded time.Time) *keySet {
	s := &keySet{byKid: make(map[string][]verKey, len(keys)), all: keys, loaded: loaded}
	for _, k := range keys {
		s.byKid[k.kid] = append(s.byKid[k.kid], k)
	}
	return s
}

// lookup returns the keys that may verify a token with this kid and alg. A token without a
// kid is checked only when exactly one key fits its algorithm, so a kid-less token never makes
// the validator try many keys.
func (s *keySet) lookup(kid, alg string) []verKey {
	if s == nil {
		return nil
	}
	var out []verKey
	if kid != "" {
		for _, k := range s.byKid[kid] {
			if keyFitsAlg(k, alg) {
				out = append(out, k)
			}
		}
		return out
	}
	for _, k := range s.all {
		if keyFitsAlg(k, alg) {
			out = append(out, k)
		}
	}
	if len(out) != 1 {
		return nil
	}
	return out
}

// parseJWKS parses a JSON Web Key Set. Keys that are unusable (unknown type, "use" other than
// "sig", too weak, symmetric where not allowed) are skipped; a set with no usable key is an
// error. Private keys are reduced to their public halves.
func parseJWKS(data []byte, allowSecret bool, loaded time.Time) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.New("auth: jwks: not a JSON key set")
	}
	var keys []verKey
	for _, raw := range doc.Keys {
		if len(keys) == maxKeysPerSet {
			break
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			continue
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		if jwk.Algorithm != "" && !supportedAlgs[jwk.Algorithm] {
			continue
		}
		if !jwk.IsPublic() {
			if _, secret := jwk.Key.([]byte); !secret {
				jwk = jwk.Public()
			}
		}
		k, err := checkKey(jwk.Key, allowSecret)
		if err != nil {
			continue
		}
		keys = append(keys, verKey{kid: jwk.KeyID, alg: jwk.Algorithm, key: k})
	}
	if len(keys) == 0 {
		return nil, errors.New("auth: jwks: no usable signing key")
	}
	return newKeySet(keys, loaded), nil
}
