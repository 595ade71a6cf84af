package discovery_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/discovery"
)

func TestStaticRefusesBadAddresses(t *testing.T) {
	for _, tc := range []struct {
		addr, want string
	}{
		{"not-an-address", `services["svc"][1]`},
		{"127.0.0.1", "missing port"},
		{"127.0.0.1:0", "port out of range"},
		{"127.0.0.1:65536", "port out of range"},
		{"127.0.0.1:http", "port out of range"},
		{":8080", "empty host"},
		{"bad host:80", "invalid character"},
	} {
		_, err := discovery.NewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "127.0.0.1:1"}, {Addr: tc.addr}}})
		require.Error(t, err, tc.addr)
		assert.Contains(t, err.Error(), tc.want, tc.addr)
		assert.Contains(t, err.Error(), "discovery: NewStatic", tc.addr)
		assert.Contains(t, err.Error(), `services["svc"][1]`, tc.addr)
	}
	_, err := discovery.NewStatic(map[string][]discovery.Endpoint{"": {{Addr: "127.0.0.1:1"}}})
	require.ErrorContains(t, err, "service name is empty")

	s, err := discovery.NewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "127.0.0.1:1"}, {Addr: "[::1]:2"}, {Addr: "db.internal:5432"}}})
	require.NoError(t, err)
	assert.True(t, s.Knows("svc"))
	assert.False(t, s.Knows("other"))

	// Set refuses a bad set and keeps the one it had.
	err = s.Set("svc", []discovery.Endpoint{{Addr: "not-an-address"}})
	require.ErrorContains(t, err, `discovery: Set: services["svc"][0]`)
	err = s.Set("new", []discovery.Endpoint{{Addr: "127.0.0.1:99999"}})
	require.ErrorContains(t, err, "port out of range")
	assert.False(t, s.Knows("new"), "a refused Set adds nothing")
	require.NoError(t, s.Set("new", nil))
	assert.True(t, s.Knows("new"))
	s.Delete("new")
	assert.False(t, s.Knows("new"))

	assert.Panics(t, func() { discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": {{Addr: "x"}}}) })
}

func TestCheckKnown(t *testing.T) {
	s := discovery.MustNewStatic(map[string][]discovery.Endpoint{"svc": nil})
	check := discovery.CheckKnown(s)
	require.NoError(t, check("svc"))
	err := check("ghost")
	require.ErrorIs(t, err, discovery.ErrUnknownService)
	assert.Contains(t, err.Error(), `"ghost"`)
}
