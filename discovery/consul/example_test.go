package consul_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/middleware"
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

// Compile a discovery chain, as /v1/discovery-chain/<service> answers it, into routes: here
// a splitter sending 10 % of web's requests to its v2 subset.
func ExampleCompileChain() {
	chain := &api.CompiledDiscoveryChain{
		ServiceName: "web", Datacenter: "dc1", StartNode: "splitter:web",
		Nodes: map[string]*api.DiscoveryGraphNode{
			"splitter:web": {Type: "splitter", Splits: []*api.DiscoverySplit{
				{Weight: 90, NextNode: "resolver:v1"}, {Weight: 10, NextNode: "resolver:v2"},
			}},
			"resolver:v1": {Type: "resolver", Resolver: &api.DiscoveryResolver{Target: "v1.web"}},
			"resolver:v2": {Type: "resolver", Resolver: &api.DiscoveryResolver{Target: "v2.web"},
				LoadBalancer: &api.LoadBalancer{Policy: "least_request"}},
		},
		Targets: map[string]*api.DiscoveryTarget{
			"v1.web": {Service: "web", ServiceSubset: "v1", Subset: api.ServiceResolverSubset{Filter: "Service.Meta.version == v1"}},
			"v2.web": {Service: "web", ServiceSubset: "v2", Subset: api.ServiceResolverSubset{Filter: `"v2" in Service.Tags`}},
		},
	}
	rules, err := consul.CompileChain(chain, nil)
	if err != nil {
		panic(err)
	}
	r := rules.Routes[0]
	fmt.Println("hosts:", r.Match.Hosts)
	for _, s := range r.Split {
		fmt.Printf("%s %s: %d/10000\n", s.Service, s.Subset.Key(), s.Weight)
	}
	fmt.Println("balancer:", rules.Balancers["web"].Policy)
	// Output:
	// hosts: [web]
	// web meta=version=v1: 9000/10000
	// web tags=v2: 1000/10000
	// balancer: least_request
}

// Follow the discovery chains of two services into a middleware.Config that a transport
// applies to every request. (Not run: it needs an agent; the integration tests run the same
// calls against a real one.)
func ExampleWatchChains() {
	cfg := consul.Config{Address: "127.0.0.1:8500"}
	rules, err := middleware.NewConfig(middleware.Document{})
	if err != nil {
		panic(err)
	}
	chains, err := consul.WatchChains(cfg, []string{"web", "billing"}, rules,
		consul.WithChainHook(func(r consul.ChainResult) {
			if r.Err != nil {
				fmt.Println("chain refused, the last good one stays:", r.Err)
			}
		}))
	if err != nil {
		panic(err)
	}
	defer chains.Close()
	resolver, err := consul.New(cfg)
	if err != nil {
		panic(err)
	}
	defer resolver.Close()
	tr, err := middleware.NewTransport(nil, middleware.WithResolver(resolver), middleware.WithConfig(rules))
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}
	resp, err := client.Get("http://web/v2/items") // routed, split and failed over as the chain says
	if err == nil {
		resp.Body.Close()
	}
}

// Make a Consul API client for the agent a Config names, to ask it about more than the
// catalog (config entries, here); a bad address is refused at once. NewAPIClient does not
// contact the agent.
func ExampleNewAPIClient() {
	client, err := consul.NewAPIClient(consul.Config{Address: "https://127.0.0.1:8501", Token: "secret"})
	if err != nil {
		panic(err)
	}
	entries := client.ConfigEntries() // e.g. entries.Get(api.ServiceResolver, "web", nil)
	fmt.Println(entries != nil)

	_, err = consul.NewAPIClient(consul.Config{Address: "ftp://127.0.0.1:8500"})
	fmt.Println(err)
	// Output:
	// true
	// consul: Config.Address "ftp://127.0.0.1:8500": unknown scheme "ftp" (want http or https)
}

// Compile an answer of /v1/discovery-chain/<service> as the agent wrote it: a resolver with a
// request timeout (which the api types drop) and a default subset.
func ExampleCompileChainAnswer() {
	answer := []byte(`{"Chain": {
		"ServiceName": "web", "Datacenter": "dc1", "StartNode": "resolver:v1.web.default.default.dc1",
		"Nodes": {"resolver:v1.web.default.default.dc1": {"Type": "resolver",
			"Resolver": {"Target": "v1.web.default.default.dc1", "RequestTimeout": "1.5s"}}},
		"Targets": {"v1.web.default.default.dc1": {"Service": "web", "ServiceSubset": "v1",
			"Namespace": "default", "Datacenter": "dc1", "Subset": {"Filter": "Service.Meta.version == v1"}}}}}`)
	rules, err := consul.CompileChainAnswer(answer, nil)
	if err != nil {
		panic(err)
	}
	r := rules.Routes[0]
	fmt.Println(r.Name, r.Match.Hosts, r.Destination.Service, r.Destination.Subset.Key(), time.Duration(r.Timeout))

	_, err = consul.CompileChainAnswer([]byte(`{"Chain": {"ServiceName": "web", "StartNode": "r",
		"Nodes": {"r": {"Type": "resolver", "Resolver": {"Target": "t"}}},
		"Targets": {"t": {"Service": "web", "Subset": {"Filter": "Service.Meta.version != v1"}}}}}`), nil)
	fmt.Println(errors.Is(err, consul.ErrUnsupportedFilter))
	// Output:
	// consul:web [web] web meta=version=v1 1.5s
	// true
}
