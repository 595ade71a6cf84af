// Package testenv tells tests where the external binaries they need (a Consul
// agent, a Redis server, a Chromium) are, and whether a missing one must fail or
// may skip.
//
// Paths come only from environment variables set by the project's test
// script (`make test`); tests never search PATH or guess locations:
//
//	PROXYLESS_CONSUL_BIN    path to a consul v1.14.11 binary
//	PROXYLESS_REDIS_BIN     path to a redis-server binary
//	PROXYLESS_CHROMIUM_BIN  path to Debian's chromium
//
// When the variable CI is "true", a missing binary is a test failure
// (see [Unavailable]); elsewhere the test is skipped with a hint.
package testenv
