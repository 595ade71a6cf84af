package reload_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/route/reload"
)

func ExampleFile() {
	dir, err := os.MkdirTemp("", "routes")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "routes.yaml")
	write := func(service string) {
		doc := "routes:\n  - name: api\n    destination: {service: " + service + "}\n"
		if err := os.WriteFile(path+".tmp", []byte(doc), 0o600); err != nil {
			panic(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil { // as editors save
			panic(err)
		}
	}
	destination := func(r *route.Router) string {
		return r.Table().Route("api").Destination().Service
	}

	write("api-v1")
	r, err := route.NewRouter(route.Config{})
	if err != nil {
		panic(err)
	}
	loads := make(chan reload.Result, 4)
	w, err := reload.File(r, path, reload.WithHook(func(res reload.Result) { loads <- res }))
	if err != nil {
		panic(err)
	}
	defer w.Close()
	fmt.Println(r.Version(), destination(r)) // loaded before File returns

	write("api-v2")
	select {
	case res := <-loads:
		fmt.Println(res.Version, res.Err, destination(r))
	case <-time.After(10 * time.Second):
		fmt.Println("the edit was not seen")
	}

	if err := os.WriteFile(path, []byte("routes: [{name: api, timeout: soon}]\n"), 0o600); err != nil {
		panic(err)
	}
	select {
	case res := <-loads:
		fmt.Println(res.Err != nil, r.Version(), destination(r)) // refused: the last good table stays
	case <-time.After(10 * time.Second):
		fmt.Println("the edit was not seen")
	}
	// Output:
	// 2 api-v1
	// 3 <nil> api-v2
	// true 3 api-v2
}

// With the agent unreachable (nothing listens on port 1), the watcher reports the failure
// and the Router keeps the table it has; once the agent answers, each new value of the key
// is loaded. The watcher retries on its own, with backoff, until closed.
func ExampleConsul() {
	r, err := route.NewRouter(route.Config{Routes: []route.RouteConfig{{
		Name: "api", Destination: &route.Destination{Service: "api-v1"},
	}}})
	if err != nil {
		panic(err)
	}
	client, err := api.NewClient(&api.Config{Address: "127.0.0.1:1"})
	if err != nil {
		panic(err)
	}
	loads := make(chan reload.Result, 16)
	w, err := reload.Consul(r, client, "config/routes", reload.WithHook(func(res reload.Result) {
		select {
		case loads <- res:
		default:
		}
	}))
	if err != nil {
		panic(err)
	}
	defer w.Close()
	select {
	case res := <-loads:
		fmt.Println(res.Source, res.Err != nil, r.Version(), r.Table().Route("api").Destination().Service)
	case <-time.After(10 * time.Second):
		fmt.Println("nothing reported")
	}
	// Output:
	// consul:config/routes true 1 api-v1
}
