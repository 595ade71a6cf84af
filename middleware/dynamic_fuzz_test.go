package middleware_test

import (
	"errors"
	"testing"

	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/route"
)

// FuzzParseDocument feeds documents to ParseDocument: it must not panic, its errors must
// match route.ErrInvalidConfig, and what it accepts must marshal and parse again. Fuzz with:
//
//	go test -run '^$' -fuzz FuzzParseDocument ./middleware/
func FuzzParseDocument(f *testing.F) {
	for _, seed := range []string{
		dynamicDoc1, dynamicDoc2,
		"destinations: {p: {limits: {maxConcurrent: 2, maxWait: 10ms}}}",
		"destinations: {p: {hedge: {delay: 5ms, quantile: 0.9}, disableBreaker: true}}",
		`{"destinations": {"p": {"breaker": {"openDelay": "1s"}, "timeout": 5}}}`,
		"destinations:\n  p:\n    retry: {attempts: 3}\n",
		"routes: []\n- x\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := middleware.ParseDocument(data)
		if err != nil {
			if !errors.Is(err, route.ErrInvalidConfig) {
				t.Fatalf("error %v does not match route.ErrInvalidConfig", err)
			}
			return
		}
		b, err := doc.MarshalJSON()
		if err != nil {
			return // NaN has no JSON form
		}
		if _, err := middleware.ParseDocument(b); err != nil {
			t.Fatalf("%s does not parse again: %v", b, err)
		}
	})
}
