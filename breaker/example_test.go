package breaker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/outcome"
)

func ExampleNew() {
	b, err := breaker.New(breaker.Config{MinimumVolume: 4, FailureRateThreshold: 50})
	if err != nil {
		panic(err)
	}
	// Four calls, three of them failed: 75% over the minimum volume of 4.
	for _, code := range []int{200, 503, 502, 503} {
		p, err := b.Allow()
		if err != nil {
			panic(err)
		}
		resp := &http.Response{StatusCode: code} // in real code: from the RoundTripper
		p.Done(outcome.FromHTTP(resp, nil, outcome.CauseNone, time.Time{}).Kind.Breaker())
	}
	_, err = b.Allow()
	fmt.Println(b.State(), errors.Is(err, breaker.ErrOpen))
	// Output: open true
}

func ExampleNewSet() {
	s, err := breaker.NewSet(breaker.Config{MinimumVolume: 1},
		breaker.OnStateChange(func(c breaker.StateChange) {
			fmt.Printf("%s: %s -> %s\n", c.Key, c.From, c.To)
		}))
	if err != nil {
		panic(err)
	}
	p, _ := s.Allow("10.0.0.1:8080")
	p.Done(breaker.Failure)
	p, _ = s.Allow("10.0.0.2:8080")
	p.Done(breaker.Success)

	_, err1 := s.Allow("10.0.0.1:8080")
	_, err2 := s.Allow("10.0.0.2:8080")
	fmt.Println(err1 != nil, err2 != nil)

	// 10.0.0.1 left the service.
	s.Retain("10.0.0.2:8080")
	fmt.Println(s.Len())
	// Output:
	// 10.0.0.1:8080: closed -> open
	// true false
	// 1
}

func ExampleConfig_Validate() {
	var cfg breaker.Config
	if err := json.Unmarshal([]byte(`{"failureRateThreshold": 140}`), &cfg); err != nil {
		panic(err)
	}
	fmt.Println(cfg.Validate())
	// Output: breaker: FailureRateThreshold must be in (0,100], got 140
}

// What a breaker records for HTTP results, through the outcome vocabulary: a gateway
// failure counts, a 404 is the endpoint answering, a 429 is load shed on purpose and a
// caller's cancellation says nothing.
func Example_outcomes() {
	for _, r := range []struct {
		resp  *http.Response
		err   error
		cause outcome.Cause
	}{
		{&http.Response{StatusCode: 503}, nil, outcome.CauseNone},
		{&http.Response{StatusCode: 404}, nil, outcome.CauseNone},
		{&http.Response{StatusCode: 429}, nil, outcome.CauseNone},
		{nil, context.Canceled, outcome.CauseCaller},
	} {
		fmt.Println(outcome.FromHTTP(r.resp, r.err, r.cause, time.Time{}).Kind.Breaker())
	}
	// Output:
	// failure
	// success
	// ignore
	// ignore
}
