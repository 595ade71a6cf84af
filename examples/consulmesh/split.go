package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/discovery/consul"
	"github.com/proxyless/proxyless/discovery/consul/connect"
	"github.com/proxyless/proxyless/middleware"
)

// splitRequests is how many requests measure each split.
const splitRequests = 400

// split has web follow payments' discovery chain while a splitter moves from 90/10 to 50/50.
func (w *world) split(ctx context.Context, web *connect.Mesh, s *summary, out io.Writer) error {
	entries := []api.ConfigEntry{
		&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "payments", Protocol: "http"},
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "payments", Subsets: map[string]api.ServiceResolverSubset{
			"v1": {Filter: "Service.Meta.version == v1"}, "v2": {Filter: "Service.Meta.version == v2"}}},
	}
	for _, e := range entries {
		if _, _, err := w.client.ConfigEntries().Set(e, nil); err != nil {
			return err
		}
	}
	rules, err := middleware.NewConfig(middleware.Document{})
	if err != nil {
		return err
	}
	chains, err := web.WatchChains([]string{"payments"}, rules)
	if err != nil {
		return err
	}
	defer chains.Close()
	tr, err := middleware.NewTransport(nil, middleware.WithMesh(web), middleware.WithConfig(rules))
	if err != nil {
		return err
	}
	defer tr.Close()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	fmt.Fprintln(out)
	for i, weights := range [][2]float32{{90, 10}, {50, 50}} {
		if err := w.setSplit(ctx, chains, weights); err != nil {
			return err
		}
		v2, err := v2Share(ctx, c)
		if err != nil {
			return err
		}
		s.v2Share[i] = v2
		fmt.Fprintf(out, "splitter payments v1/v2 %v/%v: web saw v1 %.1f %%, v2 %.1f %% of %d requests\n",
			weights[0], weights[1], 100*(1-v2), 100*v2, splitRequests)
	}
	return nil
}

// setSplit writes the splitter and waits until web follows it: until the document the watcher
// loaded holds the v1 weight (in hundredths of a percent).
func (w *world) setSplit(ctx context.Context, chains *consul.ChainWatcher, weights [2]float32) error {
	e := &api.ServiceSplitterConfigEntry{Kind: api.ServiceSplitter, Name: "payments", Splits: []api.ServiceSplit{
		{Weight: weights[0], ServiceSubset: "v1"}, {Weight: weights[1], ServiceSubset: "v2"}}}
	if _, _, err := w.client.ConfigEntries().Set(e, nil); err != nil {
		return err
	}
	want := fmt.Sprintf(`"weight":%d`, int(weights[0]*100))
	for {
		if strings.Contains(string(chains.Document()), want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("web did not follow the splitter")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// v2Share sends splitRequests requests to payments and returns the share v2 answered.
func v2Share(ctx context.Context, c *http.Client) (float64, error) {
	v2 := 0
	for range splitRequests {
		code, body, err := get(ctx, c, "http://payments/")
		if err != nil {
			return 0, err
		}
		if code != http.StatusOK {
			return 0, fmt.Errorf("payments answered %d", code)
		}
		if strings.HasPrefix(body, "payments v2:") {
			v2++
		}
	}
	return float64(v2) / splitRequests, nil
}
