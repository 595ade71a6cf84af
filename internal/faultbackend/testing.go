package faultbackend

import "testing"

// New starts a plain backend for the test (see [Start]) and closes it at
// the test's cleanup. It fails the test if the backend cannot start.
func New(tb testing.TB) *Backend {
	tb.Helper()
	b, err := Start()
	if err != nil {
		tb.Fatalf("faultbackend: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// NewTLS starts a TLS backend with a self-signed certificate for the test
// (see [StartTLS]) and closes it at the test's cleanup.
func NewTLS(tb testing.TB) *Backend {
	tb.Helper()
	b, err := StartTLS()
	if err != nil {
		tb.Fatalf("faultbackend: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}
