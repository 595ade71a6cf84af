package consul_test

import (
	"context"
	"fmt"
	"time"

	"github.com/proxyless/proxyless/discovery/consul"
)

// Follow the passing instances of a service through the local agent. (Not run: it needs an
// agent; the integration tests run the same calls against a real one.)
func ExampleNew() {
	r, err := consul.New(consul.Config{Address: "127.0.0.1:8500", Tag: "v2"})
	if err != nil {
		panic(err)
	}
	w, err := r.Watch(context.Background(), "payments")
	if err != nil {
		panic(err)
	}
	defer w.Close()
	for {
		eps, err := w.Next(context.Background())
		if err != nil {
			return
		}
		fmt.Println(len(eps), "instances")
	}
}

// Register this process with a TTL check kept passing, and remove it on shutdown.
func ExampleRegister() {
	cfg := consul.Config{Address: "127.0.0.1:8500"}
	reg := consul.Registration{
		Name: "payments", Address: "127.0.0.1", Port: 8081, Zone: "dc1/a",
		Check: &consul.Check{TTL: 10 * time.Second, DeregisterCriticalServiceAfter: time.Minute},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	deregister, err := consul.Register(ctx, cfg, reg)
	if err != nil {
		panic(err)
	}
	hb, err := consul.KeepPassing(cfg, reg.CheckID(), 3*time.Second)
	if err != nil {
		panic(err)
	}
	// ... serve ...
	_ = hb.Close()
	_ = deregister(context.Background())
}

// Keep the TTL check of a registered instance passing while the process is healthy. (Not
// run: it needs an agent; the integration tests run the same calls against a real one.)
func ExampleKeepPassing() {
	cfg := consul.Config{Address: "127.0.0.1:8500"}
	hb, err := consul.KeepPassing(cfg, "service:payments-1", 3*time.Second) // TTL 10s
	if err != nil {
		panic(err)
	}
	defer hb.Close() // the check turns critical after its TTL; deregister on shutdown
}
