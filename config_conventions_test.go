package proxyless_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/balancer/grpcbalancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/ratelimit/overload"
	"github.com/proxyless/proxyless/ratelimit/redis"
	"github.com/proxyless/proxyless/route"
)

// configTypes are the types users load from YAML or JSON, one of each package.
var configTypes = []any{
	balancer.Config{}, grpcbalancer.Config{}, breaker.Config{}, ratelimit.KeyedConfig{}, ratelimit.ClientIPConfig{},
	overload.AdaptiveConfig{}, overload.ThrottlerConfig{}, redis.Config{}, route.Config{},
	middleware.RetryPolicy{}, middleware.HedgePolicy{}, middleware.Document{},
	auth.ServerTLSConfig{}, auth.ClientTLSConfig{}, auth.Issuer{}, auth.ConsumersConfig{},
}

var durationType = reflect.TypeFor[time.Duration]()

// durationPaths lists the document paths of every duration field reachable from t (through
// structs, pointers and, under the key "k", maps), with each path's keys.
func durationPaths(t reflect.Type, prefix []string, seen map[reflect.Type]bool, out *[][]string, names *[]string) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Map:
		durationPaths(t.Elem(), append(prefix, "k"), seen, out, names)
		return
	case reflect.Struct:
	default:
		return
	}
	if seen[t] {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			durationPaths(f.Type, prefix, seen, out, names)
			continue
		}
		*names = append(*names, t.String()+"."+f.Name+" "+name)
		path := append(append([]string(nil), prefix...), name)
		if f.Type == durationType || (f.Type.Kind() == reflect.Int64 && f.Type.Name() == "Duration") {
			*out = append(*out, path)
			continue
		}
		durationPaths(f.Type, path, seen, out, names)
	}
}

// nest builds {"a": {"b": value}} for the path a.b.
func nest(path []string, value any) any {
	for i := len(path) - 1; i >= 0; i-- {
		value = map[string]any{path[i]: value}
	}
	return value
}

// TestConfigConventions checks every configuration type of the module: each field has a
// camelCase json name, every duration field anywhere in it reads "1500ms" (in JSON and YAML)
// and refuses a bare number naming its path, and an unknown key is refused.
func TestConfigConventions(t *testing.T) {
	for _, zero := range configTypes {
		typ := reflect.TypeOf(zero)
		var paths [][]string
		var names []string
		durationPaths(typ, nil, map[reflect.Type]bool{}, &paths, &names)
		t.Logf("%s: %d fields, %d durations", typ, len(names), len(paths))
		for _, n := range names {
			_, name, _ := strings.Cut(n, " ")
			if name == "" || strings.ContainsAny(name, "_-") || !unicode.IsLower(rune(name[0])) {
				t.Errorf("%s: json name %q is not camelCase", typ, name)
			}
		}
		for _, path := range paths {
			p := strings.Join(path, ".")
			doc, err := json.Marshal(nest(path, "1500ms"))
			if err != nil {
				t.Fatal(err)
			}
			v := reflect.New(typ)
			if err := json.Unmarshal(doc, v.Interface()); err != nil {
				t.Errorf("%s: %s: %v", typ, doc, err)
				continue
			}
			y, err := yaml.Marshal(nest(path, "1500ms"))
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(y, reflect.New(typ).Interface()); err != nil {
				t.Errorf("%s: YAML %s: %v", typ, y, err)
			}
			back, err := json.Marshal(v.Elem().Interface())
			if err != nil || !strings.Contains(string(back), `"1.5s"`) {
				t.Errorf("%s: %s marshals to %s (%v), want the duration as a string", typ, p, back, err)
			}
			bare, _ := json.Marshal(nest(path, 1500000000))
			err = json.Unmarshal(bare, reflect.New(typ).Interface())
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "duration string") {
				t.Errorf("%s: %s accepted or misreported: %v", typ, bare, err)
			}
		}
		err := json.Unmarshal([]byte(`{"noSuchField": 1}`), reflect.New(typ).Interface())
		if err == nil || !strings.Contains(err.Error(), `unknown field "noSuchField"`) {
			t.Errorf("%s: unknown field: %v", typ, err)
		}
	}
}
