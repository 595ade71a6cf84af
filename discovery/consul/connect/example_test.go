package connect_test

import (
	"fmt"

	"github.com/proxyless/proxyless/discovery/consul/connect"
)

func ExampleParseIdentity() {
	id, err := connect.ParseIdentity("spiffe://7f4c2d9e-0b1a-4c3d-9e8f-1a2b3c4d5e6f.consul/ns/default/dc/dc1/svc/payments")
	if err != nil {
		panic(err)
	}
	fmt.Println(id.Service, id.Datacenter, id.Namespace)
	_, err = connect.ParseIdentity("spiffe://7f4c2d9e.consul/agent/client/dc/dc1/id/node-1")
	fmt.Println(err)
	// Output:
	// payments dc1 default
	// connect: not a Connect service identity
}
