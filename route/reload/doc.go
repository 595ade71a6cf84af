// Package reload keeps a route.Router's table, or a middleware.Config's routes and
// destination policies, in step with a document that lives outside the process: a YAML or
// JSON file ([File], which follows edits, atomic replaces and Kubernetes ConfigMap symlink
// swaps) or a Consul KV key ([Consul], with blocking queries). Each new document is applied
// with the [Target]'s Load; an invalid one is refused and reported (see [WithLogger] and
// [WithHook]) and the last good configuration stays.
//
// Each watcher runs one goroutine until its Close. The package is apart from route so that
// programs that route without reloading do not build fsnotify or the Consul client.
package reload
