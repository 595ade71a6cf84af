package discovery_test

import (
	"fmt"

	"github.com/proxyless/proxyless/discovery"
)

// MustNewStatic is for endpoint sets written in the program (tests, examples): a literal that
// is wrong is a bug, and it panics with NewStatic's error.
func ExampleMustNewStatic() {
	r := discovery.MustNewStatic(map[string][]discovery.Endpoint{"payments": {{Addr: "127.0.0.1:8081"}}})
	fmt.Println(r.Knows("payments"), r.Knows("ledger"))

	defer func() { fmt.Println("panic:", recover()) }()
	discovery.MustNewStatic(map[string][]discovery.Endpoint{"payments": {{Addr: "127.0.0.1:0"}}})
	// Output:
	// true false
	// panic: discovery: NewStatic: services["payments"][0]: endpoint address "127.0.0.1:0": port out of range
}
