package balancer_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
)

// A MaglevTableSize is bounded as Envoy bounds table_size (5000011): a larger prime would
// make every endpoint update build a table of that many entries (2^31-1: 8 GiB), and the
// primality test of a prime near 2^63 would never end (its d*d overflows).
func TestMaglevTableSizeIsBounded(t *testing.T) {
	for _, size := range []int{5000077, 2147483647, 9223372036854775783} {
		b, err := balancer.New(balancer.Config{Policy: balancer.PolicyMaglev, MaglevTableSize: size})
		require.Error(t, err, "%d", size)
		assert.Nil(t, b)
		assert.ErrorContains(t, err, "MaglevTableSize")
	}
	b, err := balancer.New(balancer.Config{Policy: balancer.PolicyMaglev, MaglevTableSize: 5000011})
	require.NoError(t, err)
	require.NoError(t, b.Close())
}
