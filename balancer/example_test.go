package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/discovery"
)

func ExampleNew() {
	b, err := balancer.New(balancer.Config{}) // P2C peak EWMA, outlier ejection on
	if err != nil {
		panic(err)
	}
	defer b.Close()

	_, err = b.Pick(balancer.PickInfo{})
	fmt.Println(errors.Is(err, balancer.ErrNoEndpoints))

	b.Update([]discovery.Endpoint{{Addr: "10.0.0.1:8080"}, {Addr: "10.0.0.2:8080"}})

	// One request: read the clock once, pick, send, report.
	now := time.Now()
	info := balancer.PickInfo{Now: now}
	first, err := b.Pick(info)
	if err != nil {
		panic(err)
	}
	first.Done(balancer.DoneInfo{Now: now.Add(3 * time.Millisecond), Outcome: balancer.OutcomeGatewayFailure})

	// Its retry goes to the other endpoint.
	info.Tried.Add(first)
	retry, _ := b.Pick(info)
	retry.Done(balancer.DoneInfo{Now: now.Add(5 * time.Millisecond)})
	fmt.Println(retry.Endpoint.Addr != first.Endpoint.Addr)
	// Output:
	// true
	// true
}

func ExampleBalancer_Endpoints() {
	b, _ := balancer.New(balancer.Config{Policy: balancer.PolicyRoundRobin})
	defer b.Close()
	b.Update([]discovery.Endpoint{{Addr: "10.0.0.1:8080"}, {Addr: "10.0.0.2:8080"}, {Addr: "10.0.0.3:8080"}})

	// 10.0.0.1 fails with connect errors five times in a row: ejected for 30 s.
	t0 := time.Unix(1767225600, 0)
	for n := 0; n < 5; {
		p, _ := b.Pick(balancer.PickInfo{Now: t0})
		outcome := balancer.OutcomeSuccess
		if p.Endpoint.Addr == "10.0.0.1:8080" {
			outcome = balancer.OutcomeGatewayFailure
			n++
		}
		p.Done(balancer.DoneInfo{Now: t0, Latency: time.Millisecond, Outcome: outcome})
	}
	for _, s := range b.Endpoints() {
		fmt.Printf("%s ejected=%v for=%v\n", s.Addr, s.Ejected(t0), max(s.EjectedUntil.Sub(t0), 0))
	}
	fmt.Println("ejections:", b.Ejections())
	// Output:
	// 10.0.0.1:8080 ejected=true for=30s
	// 10.0.0.2:8080 ejected=false for=0s
	// 10.0.0.3:8080 ejected=false for=0s
	// ejections: 1
}

func ExampleHashString() {
	// Sticky routing: hash a session id and pass it as the key of a Maglev balancer.
	b, _ := balancer.New(balancer.Config{Policy: balancer.PolicyMaglev})
	defer b.Close()
	b.Update([]discovery.Endpoint{{Addr: "10.0.0.1:8080"}, {Addr: "10.0.0.2:8080"}, {Addr: "10.0.0.3:8080"}})
	key := balancer.HashString("session-42")
	p1, _ := b.Pick(balancer.PickInfo{Key: key})
	p1.Done(balancer.DoneInfo{})
	p2, _ := b.Pick(balancer.PickInfo{Key: key})
	p2.Done(balancer.DoneInfo{})
	fmt.Println(p1.Endpoint.Addr == p2.Endpoint.Addr)
	// Output: true
}

func ExampleHashRequest() {
	// Hash on the x-user-id header when the request has it, else on the session cookie: every
	// policy but the last is terminal, so the first that yields a value makes the key.
	policies := []balancer.HashPolicy{
		{Header: "x-user-id", Terminal: true},
		{Cookie: "session"},
	}
	request := map[string]string{"cookie:session": "s-1"} // what an adapter reads of a request
	value := func(p *balancer.HashPolicy) (string, bool) {
		if p.Header != "" {
			v, ok := request["header:"+p.Header]
			return v, ok
		}
		v, ok := request["cookie:"+p.Cookie]
		return v, ok
	}
	ctx := context.Background()
	fmt.Println("cookie only:", balancer.HashRequest(ctx, policies, value) == balancer.HashString("s-1"))
	request["header:x-user-id"] = "u-7"
	fmt.Println("header wins:", balancer.HashRequest(ctx, policies, value) == balancer.HashString("u-7"))
	// The context key: a value the application trusts, such as a verified user id.
	kctx := balancer.WithHashKey(ctx, "u-7")
	fmt.Println("context key:", balancer.HashRequest(kctx, []balancer.HashPolicy{{ContextKey: true}}, value) == balancer.HashString("u-7"))
	fmt.Println("no value, no key:", balancer.HashRequest(ctx, []balancer.HashPolicy{{Header: "x-none"}}, value))
	// Output:
	// cookie only: true
	// header wins: true
	// context key: true
	// no value, no key: 0
}

func ExamplePolicy_ringHash() {
	b, _ := balancer.New(balancer.Config{Policy: balancer.PolicyRingHash, RingHash: balancer.RingHashConfig{MinimumRingSize: 4096}})
	defer b.Close()
	b.Update([]discovery.Endpoint{{Addr: "10.0.0.1:8080"}, {Addr: "10.0.0.2:8080", Weight: 2}, {Addr: "10.0.0.3:8080"}})
	fmt.Println("points:", b.RingSize())
	key := balancer.HashString("cart-42")
	first := ""
	same := true
	for i := range 5 {
		p, _ := b.Pick(balancer.PickInfo{Key: key})
		p.Done(balancer.DoneInfo{})
		if i == 0 {
			first = p.Endpoint.Addr
		}
		same = same && p.Endpoint.Addr == first
	}
	fmt.Println("sticky:", same)
	// Output:
	// points: 4096
	// sticky: true
}
