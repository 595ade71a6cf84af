package consul

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/consul/api"
)

// FuzzEndpoints feeds arbitrary health answers through the parser: it must never panic, and
// every endpoint it accepts must be valid.
func FuzzEndpoints(f *testing.F) {
	f.Add([]byte(entriesJSON(1000, 1001)))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"Service":{"Port":70000}}]`))
	f.Add([]byte(`[{"Node":{"Address":"::1"},"Service":{"Port":1,"Weights":{"Passing":-4}},"Checks":[{"Status":"warning"}]}]`))
	f.Add([]byte(`[null]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var entries []*api.ServiceEntry
		if json.Unmarshal(data, &entries) != nil {
			return
		}
		eps, err := endpoints(entries, "zone")
		if err != nil {
			if eps != nil {
				t.Fatalf("error %v with endpoints %v", err, eps)
			}
			return
		}
		if len(eps) != len(entries) {
			t.Fatalf("%d entries gave %d endpoints", len(entries), len(eps))
		}
		for _, e := range eps {
			if err := e.Validate(); err != nil {
				t.Fatalf("accepted an invalid endpoint %+v: %v", e, err)
			}
		}
	})
}
