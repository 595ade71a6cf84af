// Package route will hold request routing: matching on host, path, method, headers and query,
// weighted traffic splits, canary releases, shadowing and fault injection, with declarative
// configuration reloaded from a file or Consul KV. It is not written yet; see the project's
// open issues.
package route
