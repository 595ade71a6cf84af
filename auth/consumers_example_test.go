package auth_test

import (
	"errors"
	"fmt"

	"github.com/proxyless/proxyless/auth"
)

func ExampleNewConsumers() {
	// Keys are issued at random (32 bytes from crypto/rand, say) and handed to the consumer;
	// the registry keeps only their hashes.
	reg, err := auth.NewConsumers(auth.ConsumersConfig{
		Plans: map[string]auth.Plan{
			"gold":   {PerSecond: 100, PerDay: 1_000_000},
			"silver": {PerSecond: 10, PerDay: 10_000, Routes: []string{"catalog"}},
		},
		Consumers: []auth.ConsumerConfig{
			{Name: "acme", Plan: "gold", Keys: []string{auth.HashAPIKey("acme-key-2")}, RevokedKeys: []string{auth.HashAPIKey("acme-key-1")}},
			{Name: "reports", Plan: "silver", Subjects: []string{"spiffe://example.org/reports"}},
		},
	})
	if err != nil {
		panic(err)
	}
	c, err := reg.ByKey("acme-key-2")
	fmt.Println(c.Name, c.Plan, c.Limits.PerSecond, err)
	_, err = reg.ByKey("acme-key-1")
	fmt.Println(errors.Is(err, auth.ErrRevokedAPIKey))
	c, _ = reg.BySubject("spiffe://example.org/reports")
	fmt.Println(c.Name, c.Limits.Routes)

	// A reload (route/reload.File or Consul with reg as its target) is Load: a bad document
	// is refused, naming the field and its line, and the registry stays as it was.
	err = reg.Load([]byte("plans: {gold: {perDay: -1}}\nconsumers: []\n"))
	fmt.Println(err)
	fmt.Println(reg.Version())
	// Output:
	// acme gold 100 <nil>
	// true
	// reports [catalog]
	// auth: plans.gold.perDay: -1 is outside 0 (no daily quota) to 2147483647 (line 1, column 24)
	// 1
}
