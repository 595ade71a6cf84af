package grpcbalancer_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
)

func ExampleHashKey() {
	// gRFC A60's request hash header: hash the x-user metadata of each call.
	policies := []balancer.HashPolicy{{Metadata: "x-user"}}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-user", "alice")
	fmt.Println(grpcbalancer.HashKey(ctx, policies) == balancer.HashString("alice"))
	fmt.Println(grpcbalancer.HashKey(context.Background(), policies)) // no metadata: no key
	// Output:
	// true
	// 0
}

func TestHashKey(t *testing.T) {
	bg := context.Background()
	md := metadata.AppendToOutgoingContext(bg, "x-user", "a", "x-user", "b", "x-other", "z")
	cases := []struct {
		name string
		ctx  context.Context
		ps   []balancer.HashPolicy
		want uint64
	}{
		{"values joined", md, []balancer.HashPolicy{{Metadata: "x-user"}}, balancer.HashString("a,b")},
		{"header is metadata", md, []balancer.HashPolicy{{Header: "X-Other"}}, balancer.HashString("z")},
		{"missing", md, []balancer.HashPolicy{{Metadata: "x-none"}}, 0},
		{"cookie yields nothing", md, []balancer.HashPolicy{{Cookie: "x-user"}, {QueryParameter: "x-user"}}, 0},
		{"source IP without port", peer.NewContext(bg, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 999}}),
			[]balancer.HashPolicy{{SourceIP: true}}, balancer.HashString("10.0.0.7")},
		{"no peer", bg, []balancer.HashPolicy{{SourceIP: true}}, 0},
		{"context key", balancer.WithHashKey(bg, "k"), []balancer.HashPolicy{{ContextKey: true}}, balancer.HashString("k")},
		{"bounded", metadata.AppendToOutgoingContext(bg, "x-user", strings.Repeat("x", 300), "x-user", "tail"),
			[]balancer.HashPolicy{{Metadata: "x-user"}}, balancer.HashString(strings.Repeat("x", balancer.MaxHashKeyBytes))},
	}
	for _, c := range cases {
		if got := grpcbalancer.HashKey(c.ctx, c.ps); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
}

func TestConfigRefusesHTTPHashPolicies(t *testing.T) {
	for _, hp := range []balancer.HashPolicy{{Cookie: "s"}, {QueryParameter: "q"}} {
		c := grpcbalancer.Config{Balancer: balancer.Config{Policy: balancer.PolicyRingHash, HashPolicy: []balancer.HashPolicy{{Metadata: "x"}, hp}}}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "Balancer.HashPolicy[1]") {
			t.Errorf("%+v: %v", hp, err)
		}
	}
}
