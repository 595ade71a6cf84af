package dns_test

import (
	"fmt"

	"github.com/proxyless/proxyless/discovery/dns"
)

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
