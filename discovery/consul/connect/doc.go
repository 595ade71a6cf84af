// Package connect makes a proxyless service a Connect-native member of a Consul service mesh,
// with no sidecar: its identity (the leaf certificate and CA roots from the local agent,
// followed with blocking queries and rotated without a restart), mTLS to and from the mesh
// (ServerTLS, ClientTLS, Transport) with Consul's SPIFFE identities and server names,
// discovery of mesh endpoints (/v1/health/connect/<service>: sidecars and Connect-native
// instances), authorization by intentions (service-intentions config entries, evaluated
// locally per request with Consul's precedence, L4 and L7), registration as a
// Connect-native instance, and traffic rules from the compiled discovery chain
// (Mesh.WatchChains: the chain follower of package consul, consul.WatchChains, judging
// failovers by the mesh endpoints' health).
//
// Joining the mesh takes a Mesh and one option of package middleware, WithMesh, which
// *Mesh implements (middleware.Mesh):
//
//	mesh, err := connect.New(ctx, connect.Config{Service: "api"})
//	...
//	join := middleware.WithMesh(mesh)
//	// server: mTLS with the leaf, each request authorized by intentions
//	h, err := middleware.NewHandler(mux, join)
//	srv := &http.Server{Handler: h, TLSConfig: mesh.ServerTLS()}
//	dereg, err := mesh.Register(ctx, consul.Registration{Address: "10.0.0.5", Port: 8443})
//	// client: mesh endpoints, dialled over mTLS to the service named
//	tr, err := middleware.NewTransport(nil, join)
//	resp, err := (&http.Client{Transport: tr}).Get("http://web/")
//	// gRPC: the same option (ServerOptions carries the mesh's grpc.Creds)
//	gs, err := middleware.NewGRPCServer(join)
//	gc, err := middleware.NewGRPCClient(nil, join)
//
// It interoperates with Consul's own sidecars: a proxyless client calls services behind a
// sidecar, and clients behind a sidecar call a Connect-native proxyless server.
package connect
