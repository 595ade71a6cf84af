package middleware_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/middleware"
)

// TestHTTPConfigDestinationHashPolicy: the hash policies of a destination's balancer in a
// WithConfig document (not WithBalancer's) key its requests: a key sticks to one endpoint,
// different keys spread.
func TestHTTPConfigDestinationHashPolicy(t *testing.T) {
	for _, pol := range hashingPolicies {
		t.Run(string(pol), func(t *testing.T) {
			cfg, err := middleware.NewConfig(middleware.Document{Destinations: map[string]middleware.DestinationPolicy{
				"svc": {Balancer: &balancer.Config{Policy: pol, HashPolicy: []balancer.HashPolicy{{Header: "x-user"}}}},
			}})
			require.NoError(t, err)
			h := newHashRig(t, 3, middleware.WithConfig(cfg))
			chosen := map[string]int{}
			for k := range 30 {
				first := h.send(t, "/", header("X-User", fmt.Sprint("user-", k)))
				for range 10 {
					require.Equal(t, first, h.send(t, "/", header("X-User", fmt.Sprint("user-", k))), "key %d sticks", k)
				}
				chosen[first]++
			}
			assert.Len(t, chosen, 3, "30 keys spread over the three endpoints: %v", chosen)
		})
	}
}
