package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
)

// outcome is the gateway's answer to one request of the script.
type outcome struct {
	status int
	header http.Header
	body   string // at most 4 KiB
}

// result is what a run saw, row by row, for the smoke test.
type result struct {
	normal       outcome // alice, GET /orders/42
	noKey        outcome // no API key
	quotaSent    int     // requests carol sent in a burst, over her plan's burst of 5
	quotaOK      int     // of them, answered 200
	overQuota    outcome // the first refusal carol got
	quotaPlan    string  // the plan the 429's JSON body names
	planRoute    outcome // carol on /orders/, a route her plan does not list
	revokedOK    outcome // bob before the revocation
	revoked      outcome // bob after it
	reloads      uint64  // the registry reloads between the two
	preflightOK  outcome // a preflight from the allowed origin
	preflightBad outcome // a preflight from another origin
	forgedXFF    outcome // alice with a forged X-Forwarded-For
	oversized    outcome // alice posting 4 KiB to /orders/ (limit 1 KiB)
	canarySent   int     // requests to /catalog/
	canaryServed map[string]int
	canaryFailed int
}

// canaryShare is the percentage of the canary requests catalog-v2 served.
func (r result) canaryShare() float64 {
	if r.canarySent == 0 {
		return 0
	}
	return 100 * float64(r.canaryServed["catalog-v2"]) / float64(r.canarySent)
}

// gateway runs the whole script and prints the outcome table.
func gateway(ctx context.Context, o options, out io.Writer) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	b := startBackends()
	defer b.close()
	dir, err := os.MkdirTemp("", "proxyless-gateway-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	e, err := newEdge(b, dir)
	defer e.close()
	if err != nil {
		return result{}, err
	}
	fmt.Fprintf(out, "gateway on %s; registry %s (keys stored hashed)\n\n", e.srv.URL, e.path)
	var res result
	for _, step := range []func(context.Context, *edge, *result) error{
		stepNormal, stepQuota, stepRevoke, stepCORS, stepForwarded, stepOversized,
	} {
		if err := step(ctx, e, &res); err != nil {
			return res, err
		}
	}
	if err := stepCanary(ctx, e, &res, o.canaryRequests); err != nil {
		return res, err
	}
	return res, printTable(out, res)
}

// do sends rq and keeps the answer as an outcome.
func (e *edge) do(ctx context.Context, rq request) (outcome, error) {
	resp, body, err := e.send(ctx, rq)
	if err != nil {
		return outcome{}, fmt.Errorf("%s %s: %w", rq.method, rq.path, err)
	}
	return outcome{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func stepNormal(ctx context.Context, e *edge, res *result) (err error) {
	if res.normal, err = e.do(ctx, request{method: "GET", path: "/orders/42", key: e.keys["alice"]}); err != nil {
		return err
	}
	res.noKey, err = e.do(ctx, request{method: "GET", path: "/catalog/items"})
	return err
}

// stepQuota: carol, on the free plan (2 per second, burst 5), sends 10 requests at once.
func stepQuota(ctx context.Context, e *edge, res *result) error {
	for res.quotaSent = 1; res.quotaSent <= 10; res.quotaSent++ {
		oc, err := e.do(ctx, request{method: "GET", path: "/catalog/items", key: e.keys["carol"]})
		if err != nil {
			return err
		}
		if oc.status == http.StatusOK {
			res.quotaOK++
		} else if res.overQuota.status == 0 {
			res.overQuota = oc
		}
	}
	res.quotaSent--
	var body struct{ Plan string }
	if err := json.Unmarshal([]byte(res.overQuota.body), &body); err == nil {
		res.quotaPlan = body.Plan
	}
	var err error
	res.planRoute, err = e.do(ctx, request{method: "GET", path: "/orders/1", key: e.keys["carol"]})
	return err
}

// stepRevoke: bob's key works, the registry file is edited to revoke it, and once the
// watcher has reloaded it the same key is refused.
func stepRevoke(ctx context.Context, e *edge, res *result) (err error) {
	bob := request{method: "GET", path: "/catalog/items", key: e.keys["bob"]}
	if res.revokedOK, err = e.do(ctx, bob); err != nil {
		return err
	}
	if res.reloads, err = e.revokeBob(ctx); err != nil {
		return err
	}
	res.revoked, err = e.do(ctx, bob)
	return err
}

func stepCORS(ctx context.Context, e *edge, res *result) (err error) {
	pre := request{method: "OPTIONS", path: "/orders/42", origin: allowedOrigin,
		header: map[string]string{"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-api-key"}}
	if res.preflightOK, err = e.do(ctx, pre); err != nil {
		return err
	}
	pre.origin = "https://evil.example"
	res.preflightBad, err = e.do(ctx, pre)
	return err
}

func stepForwarded(ctx context.Context, e *edge, res *result) (err error) {
	res.forgedXFF, err = e.do(ctx, request{method: "GET", path: "/orders/7", key: e.keys["alice"],
		header: map[string]string{"X-Forwarded-For": "203.0.113.66"}})
	return err
}

func stepOversized(ctx context.Context, e *edge, res *result) (err error) {
	res.oversized, err = e.do(ctx, request{method: "POST", path: "/orders/", key: e.keys["alice"],
		body: strings.Repeat("x", 4<<10)})
	return err
}

// stepCanary sends n requests to /catalog/ and counts the versions that answered.
func stepCanary(ctx context.Context, e *edge, res *result, n int) error {
	res.canaryServed = map[string]int{}
	for i := range n {
		oc, err := e.do(ctx, request{method: "GET", path: fmt.Sprintf("/catalog/items/%d", i), key: e.keys["alice"]})
		if err != nil {
			return err
		}
		res.canarySent++
		if oc.status != http.StatusOK {
			res.canaryFailed++
			continue
		}
		res.canaryServed[oc.header.Get(versionHeader)]++
	}
	return nil
}

// printTable writes one row per scenario: what was sent, and what the gateway answered.
func printTable(out io.Writer, r result) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	row := func(scenario, sent, answer string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", scenario, sent, answer) }
	row("SCENARIO", "REQUEST", "OUTCOME")
	row("normal traffic", "alice (gold) GET /orders/42", fmt.Sprintf("%d from %s, consumer %s, Cache-Control %s",
		r.normal.status, r.normal.header.Get(versionHeader), consumerSeen(r.normal.body), r.normal.header.Get("Cache-Control")))
	row("no API key", "GET /catalog/items", fmt.Sprintf("%d, WWW-Authenticate %s", r.noKey.status, r.noKey.header.Get("Www-Authenticate")))
	row("over quota", fmt.Sprintf("carol (free) %d requests at once", r.quotaSent), fmt.Sprintf("%d admitted, then %d plan %q (RateLimit-Policy %s, Retry-After %s)",
		r.quotaOK, r.overQuota.status, r.quotaPlan, r.overQuota.header.Get("Ratelimit-Policy"), r.overQuota.header.Get("Retry-After")))
	row("route not in plan", "carol (free) GET /orders/1", fmt.Sprint(r.planRoute.status))
	row("revoked key", "bob before and after the file edit", fmt.Sprintf("%d, then %d after %d reload(s)", r.revokedOK.status, r.revoked.status, r.reloads))
	row("CORS preflight", "OPTIONS, Origin "+allowedOrigin, fmt.Sprintf("%d, Allow-Origin %s, Allow-Methods %s", r.preflightOK.status,
		r.preflightOK.header.Get("Access-Control-Allow-Origin"), r.preflightOK.header.Get("Access-Control-Allow-Methods")))
	row("CORS preflight", "OPTIONS, Origin https://evil.example", fmt.Sprintf("%d, Allow-Origin %q", r.preflightBad.status, r.preflightBad.header.Get("Access-Control-Allow-Origin")))
	row("forged X-Forwarded-For", "alice, X-Forwarded-For 203.0.113.66", fmt.Sprintf("%d, the service saw X-Forwarded-For %s", r.forgedXFF.status, r.forgedXFF.header.Get(sawXFFHeader)))
	row("oversized body", "alice POST /orders/ 4 KiB (route limit 1 KiB)", fmt.Sprint(r.oversized.status))
	row("canary at 10 %", fmt.Sprintf("alice %d x GET /catalog/items/n", r.canarySent), fmt.Sprintf("catalog-v2 served %.1f %% (%d), v1 %d, failed %d",
		r.canaryShare(), r.canaryServed["catalog-v2"], r.canaryServed["catalog-v1"], r.canaryFailed))
	return tw.Flush()
}

// consumerSeen is the consumer name a service's answer says the gateway told it.
func consumerSeen(body string) string {
	_, after, ok := strings.Cut(body, " for ")
	if !ok {
		return "?"
	}
	name, _, _ := strings.Cut(after, " ")
	return name
}
