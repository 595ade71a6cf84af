package reload_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/route"
	"github.com/proxyless/proxyless/route/reload"
)

const goodV1 = `
routes:
  - name: r
    match: {}
    destination: {service: v1}
`

const goodV2 = `{"routes":[{"name":"r","destination":{"service":"v2"}}]}`

const badDoc = `
routes:
  - name: r
    match: {path: {regex: "("}}
    destination: {service: v3}
`

type results struct {
	mu  sync.Mutex
	all []reload.Result
}

func (r *results) add(res reload.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, res)
}

func (r *results) errors() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.all {
		if x.Err != nil {
			n++
		}
	}
	return n
}

func service(r *route.Router) string {
	rq := route.Request{Path: "/"}
	d, ok := r.Lookup(&rq)
	if !ok || d.Destination == nil {
		return ""
	}
	return d.Destination.Service
}

// syncBuffer is a log sink safe for the watcher's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(path, []byte(badDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := route.NewRouter(route.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reload.File(r, path); err == nil || !strings.Contains(err.Error(), "routes[0].match.path.regex") {
		t.Fatalf("bad initial file: %v", err)
	}
	if err := os.WriteFile(path, []byte(goodV1), 0o600); err != nil {
		t.Fatal(err)
	}
	res := &results{}
	logs := &syncBuffer{}
	w, err := reload.File(r, path, reload.WithHook(res.add), reload.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := service(r); got != "v1" {
		t.Fatalf("initial service %q", got)
	}
	// A bad edit is refused and reported; the last good table stays.
	if err := os.WriteFile(path, []byte(badDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bad file to be refused", func() bool { return res.errors() >= 1 })
	if got := service(r); got != "v1" {
		t.Fatalf("after a bad file: %q", got)
	}
	if !strings.Contains(logs.String(), "config refused") {
		t.Errorf("no log of the refusal: %s", logs.String())
	}
	// An atomic replace (write elsewhere, rename over) with JSON is picked up.
	tmp := filepath.Join(dir, ".routes.tmp")
	if err := os.WriteFile(tmp, []byte(goodV2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v2", func() bool { return service(r) == "v2" })
	// Removing the file keeps the table.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missing file to be reported", func() bool { return res.errors() >= 2 })
	if got := service(r); got != "v2" {
		t.Fatalf("after removal: %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestConsul(t *testing.T) {
	agent := shared.Agent(t)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	// A key of this run's own: the agent is shared by the package's tests and by repeated
	// runs (-count), and the test starts from a missing key.
	key := fmt.Sprintf("proxyless/routes/test-%d", time.Now().UnixNano())
	put := func(doc string) {
		t.Helper()
		if _, err := client.KV().Put(&api.KVPair{Key: key, Value: []byte(doc)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	r, err := route.NewRouter(route.Config{})
	if err != nil {
		t.Fatal(err)
	}
	res := &results{}
	w, err := reload.Consul(r, client, key, reload.WithHook(res.add))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The key is missing at first: reported, table unchanged.
	waitFor(t, "the missing key to be reported", func() bool { return res.errors() >= 1 })
	put(goodV1)
	waitFor(t, "v1 from Consul", func() bool { return service(r) == "v1" })
	put(badDoc)
	waitFor(t, "the bad value to be refused", func() bool { return res.errors() >= 2 })
	if got := service(r); got != "v1" {
		t.Fatalf("after a bad value: %q", got)
	}
	put(goodV2)
	waitFor(t, "v2 from Consul", func() bool { return service(r) == "v2" })
	// Close cancels the blocking query promptly.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestArguments(t *testing.T) {
	r, err := route.NewRouter(route.Config{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := api.NewClient(&api.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(path, []byte(goodV1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"File without a router", second(reload.File(nil, path)), "reload: file: nil router"},
		{"File of a missing file", second(reload.File(r, filepath.Join(t.TempDir(), "none.yaml"))), "reload: config file: "},
		{"Consul without a router", second(reload.Consul(nil, client, "k")), "reload: consul: nil router"},
		{"Consul without a client", second(reload.Consul(r, nil, "k")), "reload: consul: nil client"},
		{"Consul without a key", second(reload.Consul(r, client, "")), "reload: consul: empty key"},
	} {
		if tc.err == nil || !strings.HasPrefix(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one starting %q", tc.name, tc.err, tc.want)
		}
	}
}

// second returns the error of a constructor's results, closing what it returned.
func second[W interface{ Close() error }](w W, err error) error {
	if err == nil {
		_ = w.Close()
	}
	return err
}
