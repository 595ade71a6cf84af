// Package middleware composes proxyless's packages into what a service plugs in: an
// http.RoundTripper for clients (NewTransport), an http.Handler for servers (NewHandler), and
// gRPC dial and server options. It is the only package that composes the others; see the root
// package's documentation for the order in which it applies them.
package middleware
