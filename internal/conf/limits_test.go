package conf

import (
	"bytes"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// hostile returns a document of at most MaxBytes made of head, then unit repeated, then tail.
func hostile(head, unit, tail string) []byte {
	n := (MaxBytes - len(head) - len(tail)) / len(unit)
	return []byte(head + strings.Repeat(unit, n) + tail)
}

// TestHostileDocumentWorkIsBounded decodes documents of the maximum size made of as many
// nodes as fit, in both syntaxes, and checks that each is refused naming the limit and its
// line, having allocated less than 200 MB (the parse trees of these documents took 1 to 1.5
// GB before the parsers counted).
func TestHostileDocumentWorkIsBounded(t *testing.T) {
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"json list":       {hostile("[", "0,", "0]"), "over " + strconv.Itoa(maxJSONNodes) + " JSON values and keys"},
		"json object":     {hostile(`{"a":[`, `{"":0},`, `0]}`), "over " + strconv.Itoa(maxJSONNodes) + " JSON values and keys"},
		"yaml flow list":  {hostile("a: [", "0,", "0]"), "over " + strconv.Itoa(maxYAMLIndicators) + " YAML items"},
		"yaml flow map":   {hostile("a: {", "0,", "0}"), "over " + strconv.Itoa(maxYAMLIndicators) + " YAML items"},
		"yaml block list": {hostile("", "- 0\n", ""), "over " + strconv.Itoa(maxYAMLIndicators) + " YAML items"},
		"yaml block map":  {hostile("", "a: 0\n", ""), "over " + strconv.Itoa(maxYAMLIndicators) + " YAML items"},
	} {
		t.Run(name, func(t *testing.T) {
			if len(tc.data) > MaxBytes || len(tc.data) < MaxBytes-8 {
				t.Fatalf("document of %d bytes, want about %d", len(tc.data), MaxBytes)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var d doc
			err := Decode(tc.data, &d)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 {
				t.Fatalf("error %v (%T) names no line", err, err)
			}
			const limit = 200 << 20
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit {
				t.Errorf("allocated %d MB, want under %d MB", alloc>>20, limit>>20)
			}
		})
	}
}

// TestYAMLItemsLimit checks the YAML pre-scan's count at its edge: what counts, what does
// not, and the line it names.
func TestYAMLItemsLimit(t *testing.T) {
	if err := yamlItems(bytes.Repeat([]byte(","), maxYAMLIndicators)); err != nil {
		t.Fatalf("%d indicators refused: %v", maxYAMLIndicators, err)
	}
	err := yamlItems(append([]byte("a\nb\n"), bytes.Repeat([]byte(":"), maxYAMLIndicators+1)...))
	var e *Error
	if !errors.As(err, &e) || e.Line != 3 {
		t.Fatalf("one over the limit: got %v, want an *Error at line 3", err)
	}
	names := bytes.Repeat([]byte("my-service-name "), 2*maxYAMLIndicators/3) // hyphens in scalars are no items
	if err := yamlItems(names); err != nil {
		t.Fatalf("hyphenated names counted: %v", err)
	}
}

// TestLargestAcceptedDocumentWorkIsBounded parses the costliest documents the limits let
// through, one node or item under them, and checks that they parse in under 200 MB: the
// limits, not only the refusals, bound the work.
func TestLargestAcceptedDocumentWorkIsBounded(t *testing.T) {
	for name, data := range map[string][]byte{
		"json":      []byte("[" + strings.Repeat("0,", maxJSONNodes-2) + "0]"),
		"yaml map":  []byte(strings.Repeat("a: 0\n", maxYAMLIndicators)),
		"yaml flow": []byte("a: {" + strings.Repeat("0,", maxYAMLIndicators-3) + "0}"),
	} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, _, err := Parse(data)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatalf("refused at the limit: %v", err)
			}
			const limit = 200 << 20
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit {
				t.Errorf("allocated %d MB, want under %d MB", alloc>>20, limit>>20)
			}
		})
	}
}
