package ratelimit

import (
	"crypto/sha256"
	"encoding/base64"
)

// MaxKeyBytes is the longest key a limiter keeps as given. A longer one (a client may choose
// its own header values, and a key of 64 KiB would cost 64 KiB per tracked key) is replaced
// by BoundKey's digest, so that a tracked key costs at most about MaxKeyBytes plus the
// limiter's per-key state, whatever its source.
const MaxKeyBytes = 64

// BoundKey returns key itself when it is at most MaxKeyBytes long, else "sha256:" and the
// unpadded base64 of its SHA-256 (50 bytes): distinct long keys stay distinct (but for a
// collision of SHA-256), and a long key never equals a short one, which has no ':' after
// "sha256" unless its owner chose it. Keyed and the Redis limiter apply it to every key.
func BoundKey(key string) string {
	if len(key) <= MaxKeyBytes {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + base64.RawURLEncoding.EncodeToString(sum[:])
}
