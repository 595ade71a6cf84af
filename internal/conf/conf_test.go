package conf

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type retry struct {
	MaxRetries int           `json:"maxRetries,omitempty"`
	Backoff    time.Duration `json:"backoff,omitempty"`
	Statuses   []int         `json:"statuses,omitempty"`
}

type named struct {
	Service string `json:"service,omitempty"`
}

type arm struct {
	named  `yaml:",inline"`
	Weight uint32 `json:"weight,omitempty"`
}

type routeDoc struct {
	Name    string            `json:"name,omitempty"`
	Retry   *retry            `json:"retry,omitempty"`
	Split   []arm             `json:"split,omitempty"`
	Timeout time.Duration     `json:"timeout,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Ratio   float64           `json:"ratio,omitempty"`
	On      bool              `json:"on,omitempty"`
}

type doc struct {
	Routes      []routeDoc       `json:"routes"`
	IdleTimeout time.Duration    `json:"idleTimeout,omitempty"`
	Quotas      map[string]retry `json:"quotas,omitempty"`
}

func TestDecodeYAMLAndJSON(t *testing.T) {
	y := "routes:\n  - name: a\n    timeout: 250ms\n    retry: {maxRetries: 3, backoff: 1m30s, statuses: [502]}\n    split: [{service: s, weight: 2}]\n    headers: {x-a: b}\n    ratio: 0.5\n    on: true\nidleTimeout: 2s\nquotas: {p: {backoff: 1ms}}\n"
	j := `{"routes": [{"name": "a", "timeout": "250ms", "retry": {"maxRetries": 3, "backoff": "1m30s", "statuses": [502]},
	  "split": [{"service": "s", "weight": 2}], "headers": {"x-a": "b"}, "ratio": 0.5, "on": true}], "idleTimeout": "2s", "quotas": {"p": {"backoff": "1ms"}}}`
	for _, src := range []string{y, j} {
		var d doc
		if err := Decode([]byte(src), &d); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		r := d.Routes[0]
		if r.Name != "a" || r.Timeout != 250*time.Millisecond || r.Retry.MaxRetries != 3 || r.Retry.Backoff != 90*time.Second ||
			r.Retry.Statuses[0] != 502 || r.Split[0].Service != "s" || r.Split[0].Weight != 2 || r.Headers["x-a"] != "b" ||
			r.Ratio != 0.5 || !r.On || d.IdleTimeout != 2*time.Second || d.Quotas["p"].Backoff != time.Millisecond {
			t.Fatalf("decoded %+v", d)
		}
	}
}

func errOf(t *testing.T, src string, v any) *Error {
	t.Helper()
	err := Decode([]byte(src), v)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Decode(%q) = %v, want an *Error", src, err)
	}
	return e
}

func TestUnknownFieldPathAndLine(t *testing.T) {
	src := "routes:\n  - name: a\n  - name: b\n  - name: c\n    retry:\n      attempts: 3\n"
	e := errOf(t, src, &doc{})
	if e.Path != "routes[2].retry.attempts" || e.Line != 6 || e.Column != 7 {
		t.Fatalf("got %q at %d:%d", e.Path, e.Line, e.Column)
	}
	if want := `routes[2].retry.attempts: unknown field "attempts" (line 6, column 7)`; e.Error() != want {
		t.Fatalf("message %q, want %q", e.Error(), want)
	}
	j := "{\"routes\": [{}, {},\n {\"retry\": {\"attempts\": 3}}]}"
	e = errOf(t, j, &doc{})
	if e.Path != "routes[2].retry.attempts" || e.Line != 2 || e.Column != 13 {
		t.Fatalf("JSON: got %q at %d:%d", e.Path, e.Line, e.Column)
	}
}

func TestSnakeCaseSuggestsCamelCase(t *testing.T) {
	e := errOf(t, "idle_timeout: 1s\nroutes: []\n", &doc{})
	if !strings.Contains(e.Error(), `unknown field "idle_timeout" (did you mean "idleTimeout"?)`) {
		t.Fatal(e)
	}
}

func TestJSONSyntaxErrorLocated(t *testing.T) {
	e := errOf(t, "{\"routes\": [\n  {\"name\": \"a\"},\n  {\"name\" \"b\"}\n]}", &doc{})
	if e.Line != 3 || e.Column != 11 || strings.Contains(e.Error(), "json:") {
		t.Fatalf("got %v (line %d col %d)", e, e.Line, e.Column)
	}
	e = errOf(t, "{\"routes\": [", &doc{})
	if e.Line != 1 || !strings.Contains(e.Error(), "unexpected end of JSON input") {
		t.Fatal(e)
	}
	e = errOf(t, "{\"routes\": []} {}", &doc{})
	if e.Column != 16 || !strings.Contains(e.Error(), "data after") {
		t.Fatal(e)
	}
}

func TestYAMLSyntaxErrorOnItsLine(t *testing.T) {
	for _, c := range []struct {
		src  string
		line int
	}{
		{"routes: []\n- name: a\n", 2},
		{"routes:\n  - name: a\n  timeout: 1s\n", 3},
		{"idleTimeout: 1s\nroutes: [{name: a}\n", 2},
		{"routes: []\nidleTimeout: a: b\n", 2},
	} {
		e := errOf(t, c.src, &doc{})
		if e.Line != c.line || strings.Contains(e.Error(), "yaml: yaml:") {
			t.Errorf("%q: %v, want line %d", c.src, e, c.line)
		}
	}
}

func TestDurations(t *testing.T) {
	var d doc
	e := errOf(t, "idleTimeout: 5\n", &d)
	if e.Path != "idleTimeout" || !strings.Contains(e.Error(), "bare number 5") {
		t.Fatal(e)
	}
	e = errOf(t, `{"idleTimeout": 5000000000}`, &d)
	if !strings.Contains(e.Error(), `"250ms"`) {
		t.Fatal(e)
	}
	e = errOf(t, "idleTimeout: soon\n", &d)
	if !strings.Contains(e.Error(), `got "soon"`) {
		t.Fatal(e)
	}
}

func TestTypeErrors(t *testing.T) {
	for src, want := range map[string]string{
		"routes: [{split: [{weight: 1.5}]}]":   "routes[0].split[0].weight: must be a whole number from 0 to 4294967295, got 1.5",
		"routes: [{split: [{weight: -1}]}]":    "must be a whole number",
		"routes: [{retry: {maxRetries: two}}]": `routes[0].retry.maxRetries: must be a whole number`,
		`{"routes": [{"name": 3}]}`:            "routes[0].name: want a string, got 3",
		"routes: [{on: yes}]":                  "want true or false",
		"routes: {a: 1}":                       "routes: want a list, got a mapping",
		"routes: []\nroutes: []":               "routes: repeated field",
		"routes: [{headers: {a: x, a: y}}]":    `routes[0].headers.a: repeated key`,
		`routes: [{headers: {"a.b": [1]}}]`:    `routes[0].headers["a.b"]: want a string, got a list`,
	} {
		e := errOf(t, src, &doc{})
		if !strings.Contains(e.Error(), want) {
			t.Errorf("%s: %v, want %q", src, e, want)
		}
	}
	if err := Decode([]byte(`{"routes": [{"split": [{"weight": 1e3}]}]}`), &doc{}); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyAndLimits(t *testing.T) {
	for _, src := range []string{"", "  \n", "# nothing\n", "null", "---\n"} {
		if err := Decode([]byte(src), &doc{}); !errors.Is(err, ErrEmpty) {
			t.Errorf("%q: %v, want ErrEmpty", src, err)
		}
	}
	if err := Decode([]byte("routes: []\n---\nroutes: []\n"), &doc{}); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Fatal(err)
	}
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
	var b struct {
		A []string
		B [][]string
		C [][][]string
		D [][][][]string
		E [][][][][]string
		F [][][][][][]string
		G [][][][][][][]string
	}
	if err := Decode([]byte(bomb), &b); err == nil || !strings.Contains(err.Error(), "too complex") {
		t.Fatal(err)
	}
	var m any
	if err := Decode([]byte(strings.Repeat("[", 2000)), &m); err == nil {
		t.Fatal("deep JSON accepted")
	}
	if err := Decode(make([]byte, MaxBytes+1), &m); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	in := doc{Routes: []routeDoc{{Name: "a", Timeout: 1500 * time.Millisecond, Retry: &retry{Backoff: time.Second}, Split: []arm{{named{"s"}, 3}}}}, IdleTimeout: time.Minute}
	j, err := MarshalJSON(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"routes":[{"name":"a","retry":{"backoff":"1s"},"split":[{"service":"s","weight":3}],"timeout":"1.5s"}],"idleTimeout":"1m0s"}`; string(j) != want {
		t.Fatalf("JSON %s, want %s", j, want)
	}
	n, err := Node(in)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{j, y} {
		var out doc
		if err := Decode(b, &out); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if out.Routes[0].Timeout != in.Routes[0].Timeout || out.Routes[0].Split[0] != in.Routes[0].Split[0] || out.IdleTimeout != time.Minute {
			t.Fatalf("round trip of %s gave %+v", b, out)
		}
	}
	if !json.Valid(j) {
		t.Fatal("invalid JSON")
	}
}
