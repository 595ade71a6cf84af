package loadgen

import (
	"fmt"
	"strings"
)

func (s Stat) fmt(prec int) string {
	return fmt.Sprintf("%.*f [%.*f – %.*f]", prec, s.Median, prec, s.Min, prec, s.Max)
}

func (s Stat) signed(prec int) string {
	return fmt.Sprintf("%+.*f [%+.*f – %+.*f]", prec, s.Median, prec, s.Min, prec, s.Max)
}

// Markdown renders the report as tables: medians over the rounds, [min – max] beside them.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %s, nproc %d, GOMAXPROCS %d, %s, Linux %s", m.CPUModel, m.NumCPU, m.GOMAXPROCS, m.Go, m.Kernel)
	if m.HAProxy != "" {
		fmt.Fprintf(&b, ", %s", m.HAProxy)
	}
	fmt.Fprintf(&b, ".\nRuns: %s. Medians over the rounds, [min – max] beside them.\n", r.Config)
	concs := []int{}
	for _, s := range r.Summaries {
		if len(concs) == 0 || concs[len(concs)-1] != s.Concurrency {
			concs = append(concs, s.Concurrency)
		}
	}
	for _, c := range concs {
		var ss []Summary
		var bare, px, hp *Summary
		for _, s := range r.Summaries {
			if s.Concurrency == c {
				ss = append(ss, s)
			}
		}
		for i := range ss {
			switch ss[i].Setup {
			case Bare:
				bare = &ss[i]
			case Proxyless:
				px = &ss[i]
			case HAProxyS:
				hp = &ss[i]
			}
		}
		fmt.Fprintf(&b, "\n### Concurrency %d (closed loop, %d workers)\n\n", c, c)
		b.WriteString("| setup | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | errors |\n|---|---|---|---|---|---|---|\n")
		for _, s := range ss {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d |\n", s.Setup, s.RPS.fmt(0), s.P50.fmt(1), s.P90.fmt(1), s.P99.fmt(1), s.P999.fmt(1), s.Errors)
		}
		b.WriteString("\nLatency added over bare (same round), µs:\n\n| setup | +p50 | +p90 | +p99 | +p99.9 |\n|---|---|---|---|---|\n")
		for _, s := range ss {
			if s.Setup == Bare {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", s.Setup, s.AddP50.signed(1), s.AddP90.signed(1), s.AddP99.signed(1), s.AddP999.signed(1))
		}
		if px != nil && hp != nil {
			ratio := func(a, h Stat) string {
				if h.Min <= 0 { // HAProxy added no clear latency in some round: no ratio
					return "n/a"
				}
				return fmt.Sprintf("%.2f", a.Median/h.Median)
			}
			fmt.Fprintf(&b, "| proxyless ÷ haproxy (added) | %s | %s | %s | %s |\n",
				ratio(px.AddP50, hp.AddP50), ratio(px.AddP90, hp.AddP90), ratio(px.AddP99, hp.AddP99), ratio(px.AddP999, hp.AddP999))
		}
		b.WriteString("\nCPU per request, µs (client = this process, which also generates the load; sidecar = HAProxy; mesh = client + sidecar):\n\n| setup | client | sidecar | mesh | mesh ÷ bare | backend |\n|---|---|---|---|---|---|\n")
		for _, s := range ss {
			rel := "1.00"
			if bare != nil && bare.MeshCPU.Median > 0 {
				rel = fmt.Sprintf("%.2f", s.MeshCPU.Median/bare.MeshCPU.Median)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", s.Setup, s.ClientCPU.fmt(1), s.SidecarCPU.fmt(1), s.MeshCPU.fmt(1), rel, s.BackendCPU.fmt(1))
		}
	}
	return b.String()
}
