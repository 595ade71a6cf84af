package dns_test

import (
	"fmt"

	"github.com/proxyless/proxyless/discovery/dns"
)

// Config.Name maps the service a client addresses (http://payments/) to its SRV name.
func ExampleResolver_SRVName() {
	r, err := dns.New(dns.Config{Name: "_http._tcp.{service}.example.internal."})
	if err != nil {
		panic(err)
	}
	name, _ := r.SRVName("payments")
	fmt.Println(name)

	_, err = dns.New(dns.Config{Name: "payments.example.internal."})
	fmt.Println(err)
	// Output:
	// _http._tcp.payments.example.internal.
	// dns: Config.Name "payments.example.internal." must contain {service}
}
