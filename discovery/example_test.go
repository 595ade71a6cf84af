package discovery_test

import (
	"context"
	"fmt"
	"time"

	"github.com/proxyless/proxyless/discovery"
)

func ExampleNewStatic() {
	r, err := discovery.NewStatic(map[string][]discovery.Endpoint{
		"payments": {{Addr: "127.0.0.1:8081"}, {Addr: "127.0.0.1:8082", Weight: 3}},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()

	w, err := r.Watch(ctx, "payments")
	if err != nil {
		panic(err)
	}
	defer w.Close()
	eps, _ := w.Next(ctx)
	fmt.Println(len(eps), eps[1].Addr, eps[1].EffectiveWeight())

	if err := r.Set("payments", []discovery.Endpoint{{Addr: "127.0.0.1:8083"}}); err != nil {
		panic(err)
	}
	eps, _ = w.Next(ctx)
	fmt.Println(eps[0].Addr)
	// Output:
	// 2 127.0.0.1:8082 3
	// 127.0.0.1:8083
}

// A bad address is refused when the resolver is made, naming the entry.
func ExampleNewStatic_invalid() {
	_, err := discovery.NewStatic(map[string][]discovery.Endpoint{"payments": {{Addr: "not-an-address"}}})
	fmt.Println(err)
	// Output:
	// discovery: NewStatic: services["payments"][0]: endpoint address "not-an-address": address not-an-address: missing port in address
}

func ExampleNewCache() {
	r := discovery.MustNewStatic(map[string][]discovery.Endpoint{"payments": {{Addr: "127.0.0.1:8081"}}})
	cache, err := discovery.NewCache(r)
	if err != nil {
		panic(err)
	}
	defer cache.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	snap, err := cache.Get(ctx, "payments") // starts following the service
	if err != nil {
		panic(err)
	}
	fmt.Println(snap.Version, snap.Endpoints[0].Addr)

	r.Set("payments", []discovery.Endpoint{{Addr: "127.0.0.1:8082"}})
	<-snap.Changed()
	fmt.Println(cache.Load("payments").Endpoints[0].Addr) // lock-free, for the request path
	// Output:
	// 1 127.0.0.1:8081
	// 127.0.0.1:8082
}
