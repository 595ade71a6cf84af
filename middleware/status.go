package middleware

import (
	"encoding/json"
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/tracing"
)

// DestinationStatus is the state of one destination service of a Transport, for status pages
// and metrics.
type DestinationStatus struct {
	Service   string
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

// StatusSource is what [StatusHandler] reads: a *Transport, or anything else that can
// describe its destinations.
type StatusSource interface {
	Stats() Stats
	Destinations() []DestinationStatus
}

// StatusHandler returns an http.Handler for an admin port that shows, for each source (a
// Transport, typically) its counters and, per destination, the endpoints with their zone,
// weight, EWMA latency, in-flight count, breaker state, ejection and health. It answers
// JSON when the query has format=json or the Accept header prefers application/json, and a
// small HTML page otherwise. It reads only what the sources' methods return; it is safe for
// concurrent use and holds nothing to close. Only GET and HEAD are allowed.
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
	Stats        statsView         `json:"stats"`
	Destinations []destinationView `json:"destinations"`
}

type statsView struct {
	Requests        int64 `json:"requests"`
	Attempts        int64 `json:"attempts"`
	Retries         int64 `json:"retries"`
	Hedges          int64 `json:"hedges"`
	HedgeWins       int64 `json:"hedge_wins"`
	BudgetRefusals  int64 `json:"budget_refusals"`
	BreakerRefusals int64 `json:"breaker_refusals"`
	BreakerOpens    int64 `json:"breaker_opens"`
	Ejections       int64 `json:"ejections"`
}

type destinationView struct {
	Service    string         `json:"service"`
	Stale      bool           `json:"stale"`
	StaleSince *time.Time     `json:"stale_since,omitempty"`
	Ejections  uint64         `json:"ejections"`
	Known      int            `json:"endpoints_known"`
	Healthy    int            `json:"endpoints_healthy"`
	Endpoints  []endpointView `json:"endpoints"`
}

type endpointView struct {
	Addr         string     `json:"addr"`
	Zone         string     `json:"zone,omitempty"`
	Weight       uint32     `json:"weight"`
	EWMAMillis   float64    `json:"ewma_ms"`
	InFlight     int64      `json:"in_flight"`
	Requests     uint64     `json:"requests"`
	Failures     uint64     `json:"failures"`
	Healthy      bool       `json:"healthy"` // passing active health checks
	Ejected      bool       `json:"ejected"`
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	TimesEjected int        `json:"times_ejected"`
	BackoffUntil *time.Time `json:"backoff_until,omitempty"` // steered away by Retry-After
	Breaker      string     `json:"breaker,omitempty"`       // closed, open, half-open; absent when breakers are off
}

func (h *statusHandler) page() statusPage {
	now := h.now()
	p := statusPage{Time: now.UTC(), Transports: make([]transportStatus, 0, len(h.sources))}
	for _, s := range h.sources {
		st := s.Stats()
		ts := transportStatus{Stats: statsView(st), Destinations: []destinationView{}}
		for _, d := range s.Destinations() {
			ts.Destinations = append(ts.Destinations, destinationOf(d, now))
		}
		p.Transports = append(p.Transports, ts)
	}
	return p
}

func destinationOf(d DestinationStatus, now time.Time) destinationView {
	v := destinationView{Service: d.Service, Stale: d.Stale, Ejections: d.Ejections, Known: len(d.Endpoints),
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
	"ms": func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
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
<h2>transport {{$i}}</h2>
<p class="stats">
<span>requests {{$t.Stats.Requests}}</span><span>attempts {{$t.Stats.Attempts}}</span>
<span>retries {{$t.Stats.Retries}}</span><span>hedges {{$t.Stats.Hedges}} (won {{$t.Stats.HedgeWins}})</span>
<span>budget refusals {{$t.Stats.BudgetRefusals}}</span><span>breaker refusals {{$t.Stats.BreakerRefusals}}</span>
<span>breaker opens {{$t.Stats.BreakerOpens}}</span><span>ejections {{$t.Stats.Ejections}}</span>
</p>
{{range $t.Destinations}}
<h3>{{.Service}} <small>{{.Healthy}}/{{.Known}} healthy{{if .Stale}}, <span class="warn">discovery stale{{with .StaleSince}} since {{.Format "15:04:05Z07:00"}}{{end}}</span>{{end}}</small></h3>
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

// telemetryState turns destination statuses into what tracing's observable instruments
// report: pass it to tracing.WithState as
//
//	func(now time.Time) tracing.State { return telemetryState(t.Destinations(), now) }
func telemetryState(ds []DestinationStatus, now time.Time) tracing.State {
	st := tracing.State{Destinations: make([]tracing.DestinationState, len(ds))}
	for i, d := range ds {
		eps := make([]tracing.EndpointState, len(d.Endpoints))
		for j, e := range d.Endpoints {
			eps[j] = tracing.EndpointState{Addr: e.Addr, Healthy: e.Healthy, Ejected: e.Ejected(now),
				HasBreaker: e.HasBreaker, Breaker: e.Breaker}
		}
		st.Destinations[i] = tracing.DestinationState{Name: d.Service, Endpoints: eps, Ejections: d.Ejections}
		if d.Stale {
			st.Destinations[i].StaleSince = d.StaleSince
		}
	}
	return st
}
