package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/outcome"
	"github.com/proxyless/proxyless/tracing"
)

// The calls a mesh client makes for a request whose first attempt fails with a 503 and whose
// retry succeeds, and the span tree they produce.
func ExampleTelemetry_StartRequest() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tel, _ := telemetry.New(telemetry.WithTracerProvider(tp))
	defer tel.Close()

	payments := tel.Destination("payments")               // once per destination
	rt := tel.Transport(&answers{codes: []int{503, 200}}) // around the base transport
	req, _ := http.NewRequest(http.MethodGet, "http://payments/v1/charges", nil)

	ctx, r := tel.StartRequest(req.Context(), payments, req)
	var resp *http.Response
	var a *telemetry.Attempt
	for n, addr := range []string{"127.0.0.1:8081", "127.0.0.1:8082"} {
		kind := tracing.AttemptFirst
		if n > 0 {
			kind = tracing.AttemptRetry
			resp.Body.Close() // the 503, thrown away
		}
		var actx context.Context
		actx, a = r.StartAttempt(ctx, telemetry.AttemptInfo{N: n, Kind: kind, Endpoint: addr})
		out := req.WithContext(actx) // the attempt's copy, sent to the endpoint picked
		u := *req.URL
		u.Host = addr
		out.URL = &u
		resp, _ = rt.RoundTrip(out)
		a.End(outcome.FromStatus(resp.StatusCode, "", time.Time{}).Kind) // as the adapter classifies it
		if n == 0 {
			a.Discarded()
		}
	}
	r.End(a, outcome.Success, resp, nil)
	resp.Body.Close()

	spans := rec.Ended()
	sort.Slice(spans, func(i, j int) bool { return spans[i].StartTime().Before(spans[j].StartTime()) })
	for _, s := range spans {
		indent := ""
		if s.Parent().IsValid() {
			indent = "  "
		}
		fmt.Printf("%s%s %s", indent, s.Name(), s.SpanKind())
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case tracing.KeyEndpoint, tracing.KeyAttempt, tracing.KeyAttemptKind, tracing.KeyOutcome, tracing.KeyWinner, tracing.KeyDiscarded,
				"server.address", "server.port":
				fmt.Printf(" %s=%s", kv.Key, kv.Value.Emit())
			}
		}
		fmt.Println()
	}
	// Output:
	// GET payments internal proxyless.outcome=success proxyless.endpoint=127.0.0.1:8082 proxyless.attempt=1
	//   HTTP GET client server.address=127.0.0.1 server.port=8081 proxyless.attempt.kind=first proxyless.outcome=gateway_failure proxyless.attempt.discarded=true
	//   HTTP GET client server.address=127.0.0.1 server.port=8082 proxyless.attempt.kind=retry proxyless.attempt=1 proxyless.attempt.winner=true
}

// answers is a base transport that answers with each status in turn.
type answers struct{ codes []int }

func (a *answers) RoundTrip(req *http.Request) (*http.Response, error) {
	code := a.codes[0]
	a.codes = a.codes[1:]
	return &http.Response{StatusCode: code, Body: io.NopCloser(http.NoBody), Header: http.Header{}, Request: req}, nil
}
