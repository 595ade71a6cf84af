package discovery_test

import (
	"context"
	"fmt"

	"github.com/proxyless/proxyless/discovery"
)

func ExampleNewAddrBook() {
	book := discovery.NewAddrBook()
	r := book.Resolver(discovery.MustNewStatic(map[string][]discovery.Endpoint{
		"payments": {{Addr: "127.0.0.1:8081"}},
		"billing":  {{Addr: "127.0.0.1:8082"}, {Addr: "127.0.0.1:8081"}},
	}))
	ctx := context.Background()
	for _, svc := range []string{"payments", "billing"} {
		w, err := r.Watch(ctx, svc)
		if err != nil {
			panic(err)
		}
		defer w.Close()
		if _, err := w.Next(ctx); err != nil {
			panic(err)
		}
	}
	fmt.Println(book.Service("127.0.0.1:8082"))
	_, one := book.Service("127.0.0.1:8081")
	fmt.Println(one, book.Shared("127.0.0.1:8081"))
	fmt.Println(book.Has("127.0.0.1:9999"))
	// Output:
	// billing true
	// false true
	// false
}
