package middleware_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proxyless/proxyless/middleware"
)

// A nil mesh is an error of every constructor, naming the option.
func TestWithMeshNil(t *testing.T) {
	_, err := middleware.NewTransport(nil, middleware.WithMesh(nil))
	require.ErrorContains(t, err, "WithMesh: mesh is nil")
	_, err = middleware.NewGRPCServer(middleware.WithMesh(nil))
	require.ErrorContains(t, err, "WithMesh: mesh is nil")
	_, err = middleware.NewGRPCClient(nil, middleware.WithMesh(nil))
	require.ErrorContains(t, err, "WithMesh: mesh is nil")
}
