package conf

import (
	"errors"
	"testing"
)

// FuzzDecode feeds documents to Decode: it must never panic, every error must be an *Error or
// ErrEmpty, and what it accepts must encode and decode again to the same JSON. Fuzz with:
//
//	go test -run '^$' -fuzz FuzzDecode ./internal/conf/
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"routes:\n  - name: a\n    timeout: 250ms\n    retry: {maxRetries: 3, backoff: 1m30s, statuses: [502]}\n",
		`{"routes": [{"split": [{"service": "s", "weight": 2}], "headers": {"x-a": "b"}}], "idleTimeout": "2s"}`,
		"routes: [{split: [{weight: 1.5}]}]",
		"idleTimeout: 5",
		"a: &a [x]\nroutes: *a",
		"routes: []\n---\nroutes: []",
		"{\"routes\": [",
		"routes: []\n- x",
		"quotas: {p: {backoff: 1ms}, q: null}",
		"routes: [{ratio: .nan, on: true}]",
		"<<: {routes: []}",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		err := Decode(data, &d)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) && !errors.Is(err, ErrEmpty) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			return
		}
		j, err := MarshalJSON(d)
		if err != nil {
			return // NaN and infinities have no JSON form
		}
		var again doc
		if err := Decode(j, &again); err != nil {
			t.Fatalf("re-decoding %s: %v", j, err)
		}
		j2, err := MarshalJSON(again)
		if err != nil || string(j) != string(j2) {
			t.Fatalf("round trip changed %s into %s (%v)", j, j2, err)
		}
	})
}
