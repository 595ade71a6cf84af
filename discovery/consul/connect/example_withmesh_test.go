package connect_test

import (
	"context"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/middleware"
)

// Join the mesh as "web" with one option for every constructor: an HTTP client and a gRPC
// client that call mesh services over mTLS, and an HTTP and a gRPC server that authorize each
// request by the intentions. (Not run: it needs an agent with its service mesh enabled;
// TestWithMeshJoinsHTTPAndGRPC does the same against a real one.)
func ExampleMesh_withMesh() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mesh, err := connect.New(ctx, connect.Config{Consul: consul.Config{Address: "127.0.0.1:8500"}, Service: "web"})
	if err != nil {
		panic(err)
	}
	defer mesh.Close()
	join := middleware.WithMesh(mesh)

	tr, err := middleware.NewTransport(nil, join) // http://billing/... over mTLS to billing
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	gc, err := middleware.NewGRPCClient(nil, join) // gc.NewClient("billing")
	if err != nil {
		panic(err)
	}
	defer gc.Close()

	h, err := middleware.NewHandler(http.NotFoundHandler(), join)
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: mesh.ServerTLS()} // ServeTLS(ln, "", "")
	defer srv.Close()
	gs, err := middleware.NewGRPCServer(join)
	if err != nil {
		panic(err)
	}
	s := grpc.NewServer(gs.ServerOptions()...) // carries the mesh's grpc.Creds
	defer s.Stop()
}
