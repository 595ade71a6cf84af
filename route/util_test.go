package route_test

import (
	"encoding/json"

	"github.com/proxyless/proxyless/route"
)

func jsonMarshal(cfg route.Config) ([]byte, error) { return json.Marshal(cfg) }

func mustCompile(t interface {
	Helper()
	Fatal(...any)
}, doc string, opts ...route.Option) *route.Table {
	t.Helper()
	cfg, err := route.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := route.Compile(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}
