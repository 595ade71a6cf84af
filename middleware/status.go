package middleware

import (
	"encoding/json"
	"html/template"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/internal/telemetry"
	"github.com/proxyless/proxyless/route"
)

// DestinationStatus is the state of one destination service of a Transport or a GRPCClient,
// for status pages and metrics.
type DestinationStatus struct {
	// Service is the destination's key: the service, with the subset when a route chose one
	// ("payments|version=v2"); a destination of mirrored copies has it after "shadow:".
	Service   string
	Shadow    bool             // it takes mirrored copies only, counted in Stats.Shadow
	Endpoints []EndpointStatus // in the order discovery gave them
	Ejections uint64           // outlier ejections since the destination was first used
	// Stale is true while discovery serves its last good set because the source failed,
	// since StaleSince.
	Stale      bool
	StaleSince time.Time
}

// EndpointStatus is the balancer's view of one endpoint plus its breaker's state.
type EndpointStatus struct {
	balancer.EndpointStats
	HasBreaker bool          // breakers are on; Breaker is meaningful
	Breaker    breaker.State // the endpoint's breaker state
}

// StatusSource is what [StatusHandler] reads: a *Transport, a *GRPCClient, or anything else
// that can describe its destinations.
type StatusSource interface {
	Stats() Stats
	Destinations() []DestinationStatus
}

// RouteSource is implemented by a [StatusSource] whose requests may be routed, such as a
// *Transport or a *GRPCClient: [StatusHandler] then also shows the route table in force.
type RouteSource interface {
	// Router returns the router whose current table routes the source's requests, or nil
	// when they are not routed.
	Router() *route.Router
}

// StatusHandler returns an http.Handler for an admin port that shows, for each source (a
// Transport or a GRPCClient, typically) its kind ("http", "grpc"), its counters, the route table in force when the source is a
// [RouteSource] with a router (each route's match, destinations with their split weights,
// canary and its current weight, shadowing, fault and overrides), and, per destination, the
// endpoints with their zone, weight, EWMA latency, in-flight count, breaker state, ejection
// and health (for a GRPCClient: each open channel by the service it dialled, with the
// endpoints its balancer holds). It answers JSON when the query has format=json or the Accept header prefers
// application/json, and a small HTML page otherwise. It reads only what the sources' methods
// return; it is safe for concurrent use and holds nothing to close. Only GET and HEAD are
// allowed.
//
// It shows internal addresses and traffic counts: mount it on an admin listener, not on the
// public one.
func StatusHandler(sources ...StatusSource) http.Handler {
	var srcs []StatusSource
	for _, s := range sources {
		if s != nil {
			srcs = append(srcs, s)
		}
	}
	return &statusHandler{sources: srcs, now: time.Now}
}

type statusHandler struct {
	sources []StatusSource   // immutable
	now     func() time.Time // immutable
}

// statusPage is the JSON document and the HTML template's data.
type statusPage struct {
	Time       time.Time         `json:"time"`
	Transports []transportStatus `json:"transports"`
}

type transportStatus struct {
	Kind         string            `json:"kind,omitempty"` // "http" for a Transport, "grpc" for a GRPCClient
	Stats        statsView         `json:"stats"`
	Routes       *routeTableView   `json:"routes,omitempty"` // absent when requests are not routed
	Destinations []destinationView `json:"destinations"`
}

// routeTableView is the route table a source's router serves now.
type routeTableView struct {
	Version uint64      `json:"version"` // the router's version: 1, plus one per reload
	Table   []routeView `json:"table"`   // in order; the default route, if any, last
}

type routeView struct {
	Name    string `json:"name"`
	Default bool   `json:"default,omitempty"` // takes what no other route matches
	Match   string `json:"match"`             // route.Route.MatchString
	// Destinations are where matched requests go, each with its share: one destination, the
	// arms of a split, or a canary's stable and canary sides. Empty: each request goes to the
	// service its host names.
	Destinations   []routeDestView `json:"destinations"`
	Canary         *canaryView     `json:"canary,omitempty"`
	Shadow         *shadowView     `json:"shadow,omitempty"`
	Fault          string          `json:"fault,omitempty"`
	Timeout        string          `json:"timeout,omitempty"`
	AttemptTimeout string          `json:"attemptTimeout,omitempty"`
	Retry          string          `json:"retry,omitempty"`
	Hedge          string          `json:"hedge,omitempty"`
}

type routeDestView struct {
	Service string  `json:"service"`
	Subset  string  `json:"subset,omitempty"` // route.Subset.Key
	Weight  uint32  `json:"weight,omitempty"` // relative weight, for a split arm
	Percent float64 `json:"percent"`          // share of the route's requests
}

type canaryView struct {
	Service string  `json:"service"`
	Subset  string  `json:"subset,omitempty"`
	Percent float64 `json:"percent"` // the weight in force, the analysis's as it steps
	// Analysis is running, promoted or rolled back; absent for a fixed weight.
	Analysis string `json:"analysis,omitempty"`
}

type shadowView struct {
	Service string  `json:"service"`
	Subset  string  `json:"subset,omitempty"`
	Percent float64 `json:"percent"` // share of matched requests mirrored
}

type statsView struct {
	Requests        int64 `json:"requests"`
	Attempts        int64 `json:"attempts"`
	Retries         int64 `json:"retries"`
	Hedges          int64 `json:"hedges"`
	HedgeWins       int64 `json:"hedgeWins"`
	BudgetRefusals  int64 `json:"budgetRefusals"`
	BreakerRefusals int64 `json:"breakerRefusals"`
	BreakerOpens    int64 `json:"breakerOpens"`
	Ejections       int64 `json:"ejections"`
	Overflows       int64 `json:"overflows"`
	Fallbacks       int64 `json:"fallbacks"`
	// Shadow counts mirrored copies apart from the transport's own requests; absent while
	// nothing was mirrored.
	Shadow *shadowStatsView `json:"shadow,omitempty"`
}

type shadowStatsView struct {
	Mirrored        int64 `json:"mirrored"`
	Dropped         int64 `json:"dropped"`
	InFlight        int64 `json:"inFlight"`
	Requests        int64 `json:"requests"`
	Attempts        int64 `json:"attempts"`
	Retries         int64 `json:"retries"`
	BreakerRefusals int64 `json:"breakerRefusals"`
	BreakerOpens    int64 `json:"breakerOpens"`
	Ejections       int64 `json:"ejections"`
	Matched         int64 `json:"matched"`
	Mismatched      int64 `json:"mismatched"`
	Failed          int64 `json:"failed"`
	Unpaired        int64 `json:"unpaired"`
}

func statsViewOf(st Stats) statsView {
	v := statsView{
		Requests: st.Requests, Attempts: st.Attempts, Retries: st.Retries, Hedges: st.Hedges,
		HedgeWins: st.HedgeWins, BudgetRefusals: st.BudgetRefusals, BreakerRefusals: st.BreakerRefusals,
		BreakerOpens: st.BreakerOpens, Ejections: st.Ejections, Fallbacks: st.Fallbacks, Overflows: st.Overflows,
	}
	if sh := st.Shadow; sh != (ShadowStats{}) {
		v.Shadow = &shadowStatsView{
			Mirrored: sh.Mirrored, Dropped: sh.Dropped, InFlight: sh.InFlight, Requests: sh.Requests, Attempts: sh.Attempts,
			Retries: sh.Retries, BreakerRefusals: sh.BreakerRefusals, BreakerOpens: sh.BreakerOpens,
			Ejections: sh.Ejections, Matched: sh.Matched, Mismatched: sh.Mismatched, Failed: sh.Failed,
			Unpaired: sh.Unpaired,
		}
	}
	return v
}

type destinationView struct {
	Service    string         `json:"service"`
	Shadow     bool           `json:"shadow,omitempty"` // takes mirrored copies only`
	Stale      bool           `json:"stale"`
	StaleSince *time.Time     `json:"staleSince,omitempty"`
	Ejections  uint64         `json:"ejections"`
	Known      int            `json:"endpointsKnown"`
	Healthy    int            `json:"endpointsHealthy"`
	Endpoints  []endpointView `json:"endpoints"`
}

type endpointView struct {
	Addr         string     `json:"addr"`
	Zone         string     `json:"zone,omitempty"`
	Weight       uint32     `json:"weight"`
	EWMAMillis   float64    `json:"ewmaMs"`
	InFlight     int64      `json:"inFlight"`
	Requests     uint64     `json:"requests"`
	Failures     uint64     `json:"failures"`
	Healthy      bool       `json:"healthy"` // passing active health checks
	Ejected      bool       `json:"ejected"`
	EjectedUntil *time.Time `json:"ejectedUntil,omitempty"`
	TimesEjected int        `json:"timesEjected"`
	BackoffUntil *time.Time `json:"backoffUntil,omitempty"` // steered away by Retry-After
	Breaker      string     `json:"breaker,omitempty"`      // closed, open, half-open; absent when breakers are off
}

func (h *statusHandler) page() statusPage {
	now := h.now()
	p := statusPage{Time: now.UTC(), Transports: make([]transportStatus, 0, len(h.sources))}
	for _, s := range h.sources {
		st := s.Stats()
		ts := transportStatus{Kind: sourceKind(s), Stats: statsViewOf(st), Destinations: []destinationView{}}
		if rs, ok := s.(RouteSource); ok {
			if r := rs.Router(); r != nil {
				ts.Routes = routeTableOf(r)
			}
		}
		for _, d := range s.Destinations() {
			ts.Destinations = append(ts.Destinations, destinationOf(d, now))
		}
		p.Transports = append(p.Transports, ts)
	}
	return p
}

// sourceKind names the kinds of source this package makes.
func sourceKind(s StatusSource) string {
	switch s.(type) {
	case *Transport:
		return "http"
	case *GRPCClient:
		return "grpc"
	}
	return ""
}

func destinationOf(d DestinationStatus, now time.Time) destinationView {
	v := destinationView{Service: d.Service, Shadow: d.Shadow, Stale: d.Stale, Ejections: d.Ejections, Known: len(d.Endpoints),
		Endpoints: make([]endpointView, 0, len(d.Endpoints))}
	if d.Stale && !d.StaleSince.IsZero() {
		v.StaleSince = timePtr(d.StaleSince)
	}
	for _, e := range d.Endpoints {
		ev := endpointView{
			Addr: e.Addr, Zone: e.Zone, Weight: e.Weight,
			EWMAMillis: float64(e.EWMA.Microseconds()) / 1000,
			InFlight:   e.InFlight, Requests: e.Requests, Failures: e.Failures,
			Healthy: e.Healthy, Ejected: e.Ejected(now), TimesEjected: e.TimesEjected,
		}
		if ev.Ejected {
			ev.EjectedUntil = timePtr(e.EjectedUntil)
		}
		if now.Before(e.BackoffUntil) {
			ev.BackoffUntil = timePtr(e.BackoffUntil)
		}
		if e.HasBreaker {
			ev.Breaker = e.Breaker.String()
		}
		if ev.Healthy && !ev.Ejected {
			v.Healthy++
		}
		v.Endpoints = append(v.Endpoints, ev)
	}
	return v
}

// routeTableOf describes the table r serves now.
func routeTableOf(r *route.Router) *routeTableView {
	tbl, version := r.Current()
	v := &routeTableView{Version: version, Table: make([]routeView, 0, len(tbl.Routes())+1)}
	for _, rt := range tbl.Routes() {
		v.Table = append(v.Table, routeOf(rt))
	}
	if def := tbl.Default(); def != nil {
		rv := routeOf(def)
		rv.Default = true
		v.Table = append(v.Table, rv)
	}
	return v
}

func routeOf(rt *route.Route) routeView {
	v := routeView{Name: rt.Name(), Match: rt.MatchString(), Destinations: []routeDestView{},
		Fault: faultText(rt.Fault()), Retry: retryText(rt.Retry()), Hedge: hedgeText(rt.Hedge())}
	if d := rt.Destination(); d != nil {
		v.Destinations = append(v.Destinations, routeDestView{Service: d.Service, Subset: d.Subset.Key(), Percent: 100})
	}
	if arms := rt.Split(); len(arms) > 0 {
		var total float64
		for _, a := range arms {
			total += float64(a.Weight)
		}
		for _, a := range arms {
			v.Destinations = append(v.Destinations, routeDestView{Service: a.Service, Subset: a.Subset.Key(),
				Weight: a.Weight, Percent: round2(100 * float64(a.Weight) / total)})
		}
	}
	if c, ok := rt.Canary(); ok {
		v.Destinations = append(v.Destinations,
			routeDestView{Service: c.Stable.Service, Subset: c.Stable.Subset.Key(), Percent: round2(100 - c.Weight)},
			routeDestView{Service: c.Canary.Service, Subset: c.Canary.Subset.Key(), Percent: c.Weight})
		v.Canary = &canaryView{Service: c.Canary.Service, Subset: c.Canary.Subset.Key(), Percent: c.Weight}
		if c.Analyzed {
			v.Canary.Analysis = c.Analysis.String()
		}
	}
	if sp := rt.Shadow(); sp != nil {
		d := sp.Destination()
		v.Shadow = &shadowView{Service: d.Service, Subset: d.Subset.Key(), Percent: sp.Percent()}
	}
	if d := rt.Timeout(); d > 0 {
		v.Timeout = d.String()
	}
	if d := rt.AttemptTimeout(); d > 0 {
		v.AttemptTimeout = d.String()
	}
	return v
}

// Overrides lists the route's policy overrides for the HTML page, such as "timeout 2s".
func (v routeView) Overrides() []string {
	var out []string
	for _, o := range [...]struct{ what, v string }{
		{"timeout ", v.Timeout}, {"attempt timeout ", v.AttemptTimeout}, {"retry ", v.Retry}, {"hedge ", v.Hedge},
	} {
		if o.v != "" {
			out = append(out, o.what+o.v)
		}
	}
	return out
}

// round2 rounds a percentage to two decimals, the precision of canary weights.
func round2(p float64) float64 { return math.Round(p*100) / 100 }

// pct formats a percentage without trailing zeros: "12.5", "100".
func pct(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

// retryText summarises a route's retry override, such as "max 2, on 502,503"; "" for none.
func retryText(o *route.RetryOverride) string {
	switch {
	case o == nil:
		return ""
	case o.Disable:
		return "off"
	}
	var parts []string
	if o.MaxRetries > 0 {
		parts = append(parts, "max "+strconv.Itoa(o.MaxRetries))
	}
	if len(o.Statuses) > 0 {
		codes := make([]string, len(o.Statuses))
		for i, c := range o.Statuses {
			codes[i] = strconv.Itoa(c)
		}
		parts = append(parts, "on "+strings.Join(codes, ","))
	}
	if o.RetryNonIdempotent {
		parts = append(parts, "non-idempotent too")
	}
	if o.BackoffBase > 0 {
		parts = append(parts, "backoff from "+o.BackoffBase.String())
	}
	if o.BackoffMax > 0 {
		parts = append(parts, "backoff to "+o.BackoffMax.String())
	}
	if len(parts) == 0 {
		return "as the transport"
	}
	return strings.Join(parts, ", ")
}

// hedgeText summarises a route's hedging override, such as "after 50ms, max 1"; "" for none.
func hedgeText(o *route.HedgeOverride) string {
	switch {
	case o == nil:
		return ""
	case o.Disable:
		return "off"
	}
	return "after " + o.Delay.String() + ", max " + strconv.Itoa(o.MaxHedges)
}

// faultText summarises a route's faults, such as "delay 10% 100ms; abort 1% HTTP 503, gRPC
// 14"; "" for none.
func faultText(inj *route.Injector) string {
	f := inj.Config()
	var parts []string
	if d := f.Delay; d != nil {
		var how string
		switch {
		case d.Fixed > 0:
			how = d.Fixed.String()
		case d.Mean > 0:
			how = "exponential, mean " + d.Mean.String() + ", max " + d.Max.String()
		default:
			how = "uniform " + d.Min.String() + " to " + d.Max.String()
		}
		parts = append(parts, "delay "+pct(*d.Percent)+" "+how)
	}
	if a := f.Abort; a != nil {
		parts = append(parts, "abort "+pct(*a.Percent)+" HTTP "+strconv.Itoa(a.HTTPStatus)+", gRPC "+strconv.Itoa(a.GRPCCode))
	}
	return strings.Join(parts, "; ")
}

func timePtr(t time.Time) *time.Time {
	u := t.UTC()
	return &u
}

func (h *statusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := h.page()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = statusTemplate.Execute(w, p)
}

// wantsJSON reports whether the client asked for JSON: format=json, or an Accept header whose
// first media type is application/json (format=html forces HTML).
func wantsJSON(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return true
	case "html":
		return false
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		return mt == "application/json"
	}
	return false
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ms":  func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
	"pct": pct,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>proxyless status</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { background: #fdd; } .warn { background: #ffd; } .ok { background: #dfd; }
.stats span { margin-right: 1.2em; }
</style>
</head>
<body>
<h1>proxyless status</h1>
<p>as of {{.Time.Format "2006-01-02T15:04:05Z07:00"}}</p>
{{range $i, $t := .Transports}}
<h2>transport {{$i}}{{with $t.Kind}} <small>({{.}})</small>{{end}}</h2>
<p class="stats">
<span>requests {{$t.Stats.Requests}}</span><span>attempts {{$t.Stats.Attempts}}</span>
<span>retries {{$t.Stats.Retries}}</span><span>hedges {{$t.Stats.Hedges}} (won {{$t.Stats.HedgeWins}})</span>
<span>budget refusals {{$t.Stats.BudgetRefusals}}</span><span>breaker refusals {{$t.Stats.BreakerRefusals}}</span>
<span>breaker opens {{$t.Stats.BreakerOpens}}</span><span>ejections {{$t.Stats.Ejections}}</span><span>limit overflows {{$t.Stats.Overflows}}</span>
<span>fallbacks {{$t.Stats.Fallbacks}}</span>
</p>
{{with $t.Stats.Shadow}}<p class="stats shadow"><strong>shadow</strong>
<span>mirrored {{.Mirrored}}</span><span>dropped {{.Dropped}}</span><span>in flight {{.InFlight}}</span>
<span class="{{if .Matched}}ok{{end}}">matched {{.Matched}}</span><span class="{{if .Mismatched}}warn{{end}}">mismatched {{.Mismatched}}</span>
<span class="{{if .Failed}}bad{{end}}">shadow failed {{.Failed}}</span><span>unpaired {{.Unpaired}}</span>
<span>requests {{.Requests}}</span><span>attempts {{.Attempts}}</span><span>retries {{.Retries}}</span>
<span>breaker refusals {{.BreakerRefusals}}</span><span>breaker opens {{.BreakerOpens}}</span><span>ejections {{.Ejections}}</span>
</p>{{end}}
{{with $t.Routes}}
<h3>routes <small>table version {{.Version}}</small></h3>
{{if .Table}}<table class="routes">
<thead><tr><th>route</th><th>match</th><th>destinations</th><th>canary</th><th>shadow</th><th>fault</th><th>overrides</th></tr></thead>
<tbody>
{{range .Table}}<tr>
<td>{{.Name}}{{if .Default}} <small>(default)</small>{{end}}</td><td><code>{{.Match}}</code></td>
<td>{{range $i, $d := .Destinations}}{{if $i}}<br>{{end}}{{$d.Service}}{{with $d.Subset}} [{{.}}]{{end}} {{pct $d.Percent}}{{with $d.Weight}} (weight {{.}}){{end}}{{else}}by host{{end}}</td>
<td class="{{with .Canary}}{{if eq .Analysis "rolled back"}}bad{{else if eq .Analysis "running"}}warn{{end}}{{end}}">{{with .Canary}}{{.Service}}{{with .Subset}} [{{.}}]{{end}} {{pct .Percent}}{{with .Analysis}} ({{.}}){{end}}{{end}}</td>
<td>{{with .Shadow}}{{.Service}}{{with .Subset}} [{{.}}]{{end}} {{pct .Percent}}{{end}}</td>
<td class="{{if .Fault}}warn{{end}}">{{.Fault}}</td>
<td>{{range $i, $o := .Overrides}}{{if $i}}<br>{{end}}{{$o}}{{end}}</td>
</tr>
{{end}}</tbody>
</table>
{{else}}<p>the route table is empty: requests go by their host</p>
{{end}}{{end}}
{{range $t.Destinations}}
<h3>{{.Service}} <small>{{if .Shadow}}mirrored copies only, {{end}}{{.Healthy}}/{{.Known}} healthy{{if .Stale}}, <span class="warn">discovery stale{{with .StaleSince}} since {{.Format "15:04:05Z07:00"}}{{end}}</span>{{end}}</small></h3>
<table>
<thead><tr><th>endpoint</th><th>zone</th><th>weight</th><th>EWMA ms</th><th>in flight</th><th>requests</th><th>failures</th><th>breaker</th><th>ejection</th><th>health</th></tr></thead>
<tbody>
{{range .Endpoints}}<tr>
<td>{{.Addr}}</td><td>{{.Zone}}</td><td class="num">{{.Weight}}</td><td class="num">{{ms .EWMAMillis}}</td>
<td class="num">{{.InFlight}}</td><td class="num">{{.Requests}}</td><td class="num">{{.Failures}}</td>
<td class="{{if eq .Breaker "open"}}bad{{else if eq .Breaker "half-open"}}warn{{else if .Breaker}}ok{{end}}">{{if .Breaker}}{{.Breaker}}{{else}}off{{end}}</td>
<td class="{{if .Ejected}}bad{{end}}">{{if .Ejected}}ejected until {{.EjectedUntil.Format "15:04:05Z07:00"}} (&times;{{.TimesEjected}}){{else}}in rotation{{end}}</td>
<td class="{{if .Healthy}}ok{{else}}bad{{end}}">{{if .Healthy}}healthy{{else}}unhealthy{{end}}</td>
</tr>
{{end}}</tbody>
</table>
{{else}}<p>no destinations yet</p>
{{end}}
{{else}}<p>no transports</p>
{{end}}
</body>
</html>
`))

// state is what the transport's observable instruments report at now: its destinations
// (telemetryState), its adaptive concurrency limit, and the canary weights of the route table
// in force (canaryStates), read
// from the same table accessors as the status page, so that the gauge and the page agree.
// Pass it to telemetry.WithState as t.state.
func (t *Transport) state(now time.Time) telemetry.State {
	st := telemetryState(t.Destinations(), now)
	if r := t.cfg.routes; r != nil {
		st.Canaries = canaryStates(r.Table())
	}
	st.Limits = limitStates(t.cfg) // telemetry.go
	return st
}

// canaryStates returns the weight in force of each canary of tbl, in table order (the
// default route last): the analysis's current weight for an analyzed canary. Destination is
// the canary destination's key, service or service|subset, as destinations are named
// elsewhere in telemetry.
func canaryStates(tbl *route.Table) []telemetry.CanaryState {
	var out []telemetry.CanaryState
	add := func(rt *route.Route) {
		if c, ok := rt.Canary(); ok {
			out = append(out, telemetry.CanaryState{Route: rt.Name(), Destination: c.Canary.Key(), Percent: c.Weight})
		}
	}
	for _, rt := range tbl.Routes() {
		add(rt)
	}
	if def := tbl.Default(); def != nil {
		add(def)
	}
	return out
}

// telemetryState turns destination statuses into what the telemetry's observable instruments
// report about destinations; the Transport method state adds the canaries.
func telemetryState(ds []DestinationStatus, now time.Time) telemetry.State {
	st := telemetry.State{Destinations: make([]telemetry.DestinationState, len(ds))}
	for i, d := range ds {
		eps := make([]telemetry.EndpointState, len(d.Endpoints))
		for j, e := range d.Endpoints {
			eps[j] = telemetry.EndpointState{Addr: e.Addr, Healthy: e.Healthy, Ejected: e.Ejected(now),
				HasBreaker: e.HasBreaker, Breaker: e.Breaker}
		}
		st.Destinations[i] = telemetry.DestinationState{Name: d.Service, Endpoints: eps, Ejections: d.Ejections}
		if d.Stale {
			st.Destinations[i].StaleSince = d.StaleSince
		}
	}
	return st
}
