package route_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/route"
)

func configErr(t *testing.T, doc string) *route.ConfigError {
	t.Helper()
	_, err := route.ParseConfig([]byte(doc))
	var ce *route.ConfigError
	if !errors.As(err, &ce) || !errors.Is(err, route.ErrInvalidConfig) {
		t.Fatalf("ParseConfig(%q) = %v, want a *ConfigError", doc, err)
	}
	return ce
}

// TestConfigErrorShapes pins the three error shapes users see: an unknown field named by its
// document path on its own line, a JSON syntax error located without a doubled "json:", and
// a YAML syntax error on the line where it is.
func TestConfigErrorShapes(t *testing.T) {
	doc := `routes:
  - destination: {service: a}
  - destination: {service: b}
  - destination: {service: c}
    retry:
      maxRetries: 2
      attempts: 3
`
	ce := configErr(t, doc)
	if ce.Path != "routes[2].retry.attempts" || ce.Line != 7 || ce.Column != 7 {
		t.Fatalf("unknown field: %v (path %q, line %d, column %d)", ce, ce.Path, ce.Line, ce.Column)
	}
	if want := `route: routes[2].retry.attempts: unknown field "attempts" (line 7, column 7)`; ce.Error() != want {
		t.Fatalf("message %q, want %q", ce.Error(), want)
	}

	ce = configErr(t, "{\"routes\": [\n  {\"destination\": {\"service\": \"a\"}},\n  {\"destination\": {\"service\": \"b\"}\n]}")
	if msg := ce.Error(); strings.Contains(msg, "json: json:") || strings.Contains(msg, "json: ") || ce.Line != 4 || ce.Column != 1 {
		t.Fatalf("JSON syntax error: %q (line %d, column %d)", msg, ce.Line, ce.Column)
	}

	ce = configErr(t, "routes: []\n- destination: {service: a}\n")
	if ce.Line != 2 || !strings.Contains(ce.Error(), "(line 2)") || strings.Contains(ce.Error(), "yaml: yaml:") {
		t.Fatalf("YAML syntax error: %q (line %d)", ce.Error(), ce.Line)
	}
}

func TestConfigDurationsAreStrings(t *testing.T) {
	ce := configErr(t, "routes: [{timeout: 2000000000, destination: {service: a}}]")
	if ce.Path != "routes[0].timeout" || !strings.Contains(ce.Error(), `"250ms"`) {
		t.Fatal(ce)
	}
	cfg, err := route.ParseConfig([]byte(`{"routes": [{"timeout": "2s", "retry": {"backoffBase": "10ms"}, "destination": {"service": "a"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Routes[0].Timeout.Std() != 2*time.Second || cfg.Routes[0].Retry.BackoffBase.Std() != 10*time.Millisecond {
		t.Fatalf("%+v", cfg.Routes[0])
	}
	// encoding/json and the YAML library read a Config as ParseConfig does, strictly.
	var viaJSON route.Config
	err = json.Unmarshal([]byte(`{"routes": [{"retry": {"attempts": 3}}]}`), &viaJSON)
	if !errors.As(err, &ce) || ce.Path != "routes[0].retry.attempts" {
		t.Fatalf("json.Unmarshal: %v", err)
	}
	var viaYAML route.Config
	err = yaml.Unmarshal([]byte("routes:\n  - timeout: 1s\n    retry: {attempts: 3}\n"), &viaYAML)
	if !errors.As(err, &ce) || ce.Path != "routes[0].retry.attempts" || ce.Line != 3 {
		t.Fatalf("yaml.Unmarshal: %v", err)
	}
	// A marshalled Config reads back.
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := route.ParseConfig(b); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
