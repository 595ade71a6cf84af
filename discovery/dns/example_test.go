package dns_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/proxyless/proxyless/discovery/dns"
)

// Follow a service through its SRV records. The DNS server here is a small one on a
// loopback port, serving _http._tcp.shop.test. with two targets; in production it is your
// resolver, or Consul's DNS interface ("shop.service.consul").
func ExampleNew() {
	addr, stop := serveSRV()
	defer stop()

	r, err := dns.New(dns.Config{Server: addr, Interval: 30 * time.Second})
	if err != nil {
		panic(err)
	}
	w, err := r.Watch(context.Background(), "_http._tcp.shop.test.")
	if err != nil {
		panic(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eps, err := w.Next(ctx) // the first lookup; later calls wait for a change
	if err != nil {
		panic(err)
	}
	for _, ep := range eps {
		fmt.Println(ep.Addr, "weight", ep.Weight, "priority", ep.Meta["priority"])
	}

	_, err = dns.New(dns.Config{Server: "dns.example:53"})
	fmt.Println(err)
	// Output:
	// 127.0.0.1:8081 weight 10 priority 0
	// 127.0.0.2:8082 weight 20 priority 0
	// dns: Config.Server "dns.example:53": host must be an IP address
}

// serveSRV answers, over UDP on a loopback port, the SRV query for _http._tcp.shop.test. and
// the address queries for its two targets; every other question gets an empty answer.
func serveSRV() (addr string, stop func()) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if resp, ok := answer(buf[:n]); ok {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	})
	return pc.LocalAddr().String(), func() { pc.Close(); wg.Wait() }
}

func answer(query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	hdr, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true, RecursionDesired: hdr.RecursionDesired})
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	rh := dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: dnsmessage.ClassINET, TTL: 30}
	targets := map[string][4]byte{"a.shop.test.": {127, 0, 0, 1}, "b.shop.test.": {127, 0, 0, 2}}
	switch name := q.Name.String(); {
	case q.Type == dnsmessage.TypeSRV && name == "_http._tcp.shop.test.":
		_ = b.SRVResource(rh, dnsmessage.SRVResource{Weight: 10, Port: 8081, Target: dnsmessage.MustNewName("a.shop.test.")})
		_ = b.SRVResource(rh, dnsmessage.SRVResource{Weight: 20, Port: 8082, Target: dnsmessage.MustNewName("b.shop.test.")})
	case q.Type == dnsmessage.TypeA && targets[name] != [4]byte{}:
		_ = b.AResource(rh, dnsmessage.AResource{A: targets[name]})
	}
	resp, err := b.Finish()
	return resp, err == nil
}

// Config.NameTemplate maps the service a client addresses (http://payments/) to its SRV name.
func ExampleResolver_SRVName() {
	r, err := dns.New(dns.Config{NameTemplate: "_http._tcp.{service}.example.internal."})
	if err != nil {
		panic(err)
	}
	name, _ := r.SRVName("payments")
	fmt.Println(name)

	_, err = dns.New(dns.Config{NameTemplate: "payments.example.internal."})
	fmt.Println(err)
	// Output:
	// _http._tcp.payments.example.internal.
	// dns: Config.NameTemplate "payments.example.internal." must contain {service}
}
