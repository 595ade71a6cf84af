package middleware_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// A Config made from a Document written in Go (ParseDocument reads the same from YAML or
// JSON). An invalid document is refused with the path of the bad field; Update keeps the
// Config's current document when the new one is invalid.
func ExampleNewConfig() {
	cfg, err := middleware.NewConfig(middleware.Document{
		Config: route.Config{Routes: []route.RouteConfig{{
			Name:        "api",
			Match:       route.Match{Path: &route.StringMatch{Prefix: "/api/"}},
			Destination: &route.Destination{Service: "payments"},
		}}},
		Destinations: map[string]middleware.DestinationPolicy{
			"payments": {
				Balancer: &balancer.Config{Policy: balancer.PolicyLeastRequest},
				Retry:    &middleware.RetryPolicy{MaxRetries: 3},
				Timeout:  2 * time.Second,
			},
		},
	})
	if err != nil {
		panic(err)
	}
	p := cfg.Destinations()["payments"]
	fmt.Println("version", cfg.Version(), "payments:", p.Balancer.Policy, p.Retry.MaxRetries, "retries,", p.Timeout)

	_, err = middleware.NewConfig(middleware.Document{
		Destinations: map[string]middleware.DestinationPolicy{"payments": {Timeout: -time.Second}},
	})
	fmt.Println(err, errors.Is(err, route.ErrInvalidConfig))

	err = cfg.Update(middleware.Document{
		Destinations: map[string]middleware.DestinationPolicy{"payments": {Limits: &middleware.DestinationLimits{Burst: 5}}},
	})
	fmt.Println(err)
	fmt.Println("version", cfg.Version(), "still", cfg.Destinations()["payments"].Timeout)
	// Output:
	// version 1 payments: least_request 3 retries, 2s
	// route: destinations.payments.timeout: must not be negative, got -1s true
	// route: destinations.payments.limits: set rate or maxConcurrent
	// version 1 still 2s
}
