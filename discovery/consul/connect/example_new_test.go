package connect_test

import (
	"context"
	"net/http"
	"time"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/middleware"
)

// Join the mesh as "web" and call a mesh service over mTLS, with the traffic rules of its
// discovery chain. (Not run: it needs an agent with its service mesh enabled; the integration
// tests make the same calls against a real one.)
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mesh, err := connect.New(ctx, connect.Config{Consul: consul.Config{Address: "127.0.0.1:8500"}, Service: "web"})
	if err != nil {
		panic(err) // e.g. the agent's service mesh (Connect) is disabled
	}
	defer mesh.Close()

	rules, err := middleware.NewConfig(middleware.Document{})
	if err != nil {
		panic(err)
	}
	chains, err := mesh.WatchChains([]string{"billing"}, rules)
	if err != nil {
		panic(err)
	}
	defer chains.Close()
	tr, err := middleware.NewTransport(nil, middleware.WithMesh(mesh), middleware.WithConfig(rules))
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr}).Get("http://billing/invoices")
	if err == nil {
		resp.Body.Close()
	}
}
