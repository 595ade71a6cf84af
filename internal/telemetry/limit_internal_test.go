package telemetry

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// A destination whose endpoints nobody retains (gRPC calls do not) keeps at most
// minEndpointLimit endpoints' sets: the next one starts the map afresh. One that Retain has
// sized keeps up to twice what it named.
func TestEndpointSetsBounded(t *testing.T) {
	defer func(n int) { minEndpointLimit = n }(minEndpointLimit)
	minEndpointLimit = 64
	tel, err := New()
	require.NoError(t, err)
	defer tel.Close()
	d := tel.Destination("svc")
	addr := func(i int) string { return "10.0.0.1:" + strconv.Itoa(i) }
	for i := range minEndpointLimit {
		d.endpoint(addr(i))
	}
	require.Len(t, *d.eps.Load(), minEndpointLimit)
	d.endpoint(addr(minEndpointLimit))
	require.Len(t, *d.eps.Load(), 1, "the map starts afresh")

	big := make([]string, 50) // fewer than the limit, so all are there to retain
	for i := range big {
		big[i] = addr(i)
		d.endpoint(big[i])
	}
	d.Retain(big...)
	require.Len(t, *d.eps.Load(), len(big))
	for i := range len(big) - 1 {
		d.endpoint(addr(10000 + i))
	}
	require.Len(t, *d.eps.Load(), 2*len(big)-1, "under twice what Retain kept")
	d.endpoint("10.0.0.2:1")
	require.Len(t, *d.eps.Load(), 2*len(big))
	d.endpoint("10.0.0.2:2")
	require.Len(t, *d.eps.Load(), 1)
}
