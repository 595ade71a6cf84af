package route_test

import (
	"sync"
	"testing"
	"time"

	"github.com/proxyless/proxyless/route"
)

const analysisDoc = `
routes:
  - name: checkout
    match: {}
    canary:
      stable: {service: v1}
      canary: {service: v2}
      weight: 10
      analysis: {interval: 1m, step: 30, maxWeight: 100, minRequests: 20, maxErrorRateIncrease: 2, maxLatencyRatio: 1.5, latencySlack: 1ms}
`

type eventLog struct {
	mu     sync.Mutex
	events []route.Event
	tbl    *route.Table
}

func (l *eventLog) record(ev route.Event) {
	// The callback runs without the analyzer's lock: calling back into it must not deadlock.
	if l.tbl != nil {
		a := l.tbl.Route(ev.Route).Analyzer()
		_ = a.State()
		_ = a.Weight()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *eventLog) kinds() []route.EventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ks []route.EventKind
	for _, e := range l.events {
		ks = append(ks, e.Kind)
	}
	return ks
}

// feed sends n outcomes to each side at now.
func feed(a *route.Analyzer, now time.Time, n int, stable, canary route.Outcome) {
	for range n {
		a.Observe(false, stable, now)
		a.Observe(true, canary, now)
	}
}

func TestAnalysisStepsAndPromotes(t *testing.T) {
	log := &eventLog{}
	tbl := mustCompile(t, analysisDoc, route.WithEvents(log.record))
	log.tbl = tbl
	a := tbl.Route("checkout").Analyzer()
	ok := route.Outcome{Latency: 10 * time.Millisecond}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	wantWeights := []float64{40, 70, 100}
	for i, w := range wantWeights {
		feed(a, now, 30, ok, ok)
		if a.Weight() != []float64{10, 40, 70}[i] {
			t.Fatalf("weight moved mid-interval: %v", a.Weight())
		}
		now = now.Add(time.Minute)
		feed(a, now, 1, ok, ok)
		if a.Weight() != w {
			t.Fatalf("step %d: weight %v, want %v", i, a.Weight(), w)
		}
	}
	if a.State() != route.AnalysisPromoted {
		t.Errorf("state %v", a.State())
	}
	got := log.kinds()
	want := []route.EventKind{route.EventStep, route.EventStep, route.EventPromote}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	// The request path sees the new weight: at 100 every request goes to the canary.
	for range 100 {
		rq := route.Request{}
		if d, _ := tbl.Lookup(&rq); !d.Canary {
			t.Fatal("stable chosen at weight 100")
		}
	}
}

func TestAnalysisRollsBackOnErrors(t *testing.T) {
	log := &eventLog{}
	tbl := mustCompile(t, analysisDoc, route.WithEvents(log.record))
	log.tbl = tbl
	a := tbl.Route("checkout").Analyzer()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := route.Outcome{Latency: 5 * time.Millisecond}
	bad := route.Outcome{Latency: 5 * time.Millisecond, Failed: true}
	// 19 canary failures: under MinRequests, not judged yet.
	feed(a, now, 19, ok, bad)
	if a.Weight() != 10 {
		t.Fatalf("judged before minRequests: weight %v", a.Weight())
	}
	// The 20th failure judges mid-interval and rolls back.
	feed(a, now.Add(time.Second), 1, ok, bad)
	if a.Weight() != 0 || a.State() != route.AnalysisRolledBack {
		t.Fatalf("weight %v state %v, want rolled back", a.Weight(), a.State())
	}
	if k := log.kinds(); len(k) != 1 || k[0] != route.EventRollback {
		t.Fatalf("events %v", k)
	}
	ev := log.events[0]
	if ev.From != 10 || ev.To != 0 || ev.Reason == "" || ev.Canary.ErrorRate != 100 {
		t.Errorf("event %+v", ev)
	}
	// Rolled back stays rolled back, and the table sends nobody to the canary.
	feed(a, now.Add(time.Hour), 100, ok, ok)
	if a.Weight() != 0 {
		t.Fatal("rolled-back canary stepped up")
	}
	for range 200 {
		rq := route.Request{}
		if d, _ := tbl.Lookup(&rq); d.Canary {
			t.Fatal("canary chosen after rollback")
		}
	}
}

func TestAnalysisRollsBackOnLatency(t *testing.T) {
	log := &eventLog{}
	tbl := mustCompile(t, analysisDoc, route.WithEvents(log.record))
	a := tbl.Route("checkout").Analyzer()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feed(a, now, 50, route.Outcome{Latency: 10 * time.Millisecond}, route.Outcome{Latency: 40 * time.Millisecond})
	if a.Weight() != 10 {
		t.Fatal("latency judged mid-interval")
	}
	if _, ok := a.Evaluate(now.Add(time.Minute)); !ok {
		t.Fatal("no event at the end of the interval")
	}
	if a.Weight() != 0 || log.kinds()[0] != route.EventRollback {
		t.Fatalf("weight %v events %v", a.Weight(), log.kinds())
	}
}

func TestAnalysisWaitsForTraffic(t *testing.T) {
	tbl := mustCompile(t, analysisDoc)
	a := tbl.Route("checkout").Analyzer()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feed(a, now, 5, route.Outcome{}, route.Outcome{})
	if _, ok := a.Evaluate(now.Add(2 * time.Minute)); ok || a.Weight() != 10 {
		t.Fatalf("stepped with 5 of 20 canary requests: weight %v", a.Weight())
	}
	feed(a, now.Add(3*time.Minute), 15, route.Outcome{}, route.Outcome{})
	if a.Weight() != 40 {
		t.Fatalf("weight %v after enough traffic", a.Weight())
	}
}

func TestAnalysisViaDecisionDoneAndReload(t *testing.T) {
	r, err := route.NewRouter(mustParse(t, analysisDoc))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	drive := func(at time.Time, n int) {
		for range n {
			rq := route.Request{}
			d, _ := r.Lookup(&rq)
			d.DoneAt(route.Outcome{Latency: time.Millisecond}, at)
		}
	}
	drive(now, 1000)
	drive(now.Add(time.Minute), 1)
	a := r.Table().Route("checkout").Analyzer()
	if a.Weight() != 40 {
		t.Fatalf("weight %v", a.Weight())
	}
	// A reload that leaves the canary alone keeps the analysis...
	cfg := mustParse(t, analysisDoc)
	cfg.Default = &route.RouteConfig{}
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.Table().Route("checkout").Analyzer(); got != a || got.Weight() != 40 {
		t.Fatal("analysis lost across an unrelated reload")
	}
	// ...and one that changes it starts afresh.
	cfg.Routes[0].Canary.Weight = 5
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.Table().Route("checkout").Analyzer(); got == a || got.Weight() != 5 {
		t.Fatalf("changed canary kept its analysis (weight %v)", got.Weight())
	}
}

func mustParse(t *testing.T, doc string) route.Config {
	t.Helper()
	cfg, err := route.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
