// Command plot turns the outputs of run.sh into SVG plots and a Markdown summary of ratios:
//
//	go run ./cmd/plot -in out -plots plots
//
// reads out/bench.txt (go test -bench output) and out/sidecar.json (cmd/loadgen), and writes
//
//	plots/latency-c<N>.svg   latency percentiles per setup, one chart per concurrency
//	plots/pick-scale.svg     pick cost against the number of endpoints
//	plots/update-scale.svg   update cost per endpoint against the number of endpoints
//	out/summary.md           every benchmark against its baseline: ratios of medians, with the
//	                         range of the ratios of paired runs, then the sidecar tables
//
// A missing input skips what depends on it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/proxyless/proxyless/benchmarks/internal/loadgen"
)

func main() {
	in := flag.String("in", "out", "directory holding bench.txt and sidecar.json")
	plots := flag.String("plots", "plots", "directory for the SVGs")
	flag.Parse()
	if err := run(*in, *plots); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func run(in, plots string) error {
	if err := os.MkdirAll(plots, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	write := func(name, content string) error {
		fmt.Fprintln(os.Stderr, "plot: wrote", name)
		return os.WriteFile(name, []byte(content), 0o644)
	}
	if f, err := os.Open(filepath.Join(in, "bench.txt")); err == nil {
		all, err := parseBench(f)
		_ = f.Close()
		if err != nil {
			return err
		}
		md.WriteString("## Go benchmarks\n\nMedians over the runs; each ratio is to the first impl of its case (the baseline), with the range of the ratios of runs paired by round (run.sh runs every benchmark once per round).\n")
		md.WriteString(summary(all))
		if svg, ok := scaleSVG(all, "Pick", "ns/op", "Pick (+Done) cost against endpoint count", "ns per pick", false); ok {
			if err := write(filepath.Join(plots, "pick-scale.svg"), svg); err != nil {
				return err
			}
		}
		if svg, ok := scaleSVG(all, "Update", "ns/endpoint", "Endpoint-set update cost per endpoint", "ns per endpoint per update (log scale)", true); ok {
			if err := write(filepath.Join(plots, "update-scale.svg"), svg); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(in, "sidecar.json")); err == nil {
		var rep loadgen.Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("sidecar.json: %w", err)
		}
		md.WriteString("\n## Sidecar comparison\n\n")
		md.WriteString(rep.Markdown())
		for c, svg := range latencySVGs(&rep) {
			if err := write(filepath.Join(plots, fmt.Sprintf("latency-c%d.svg", c)), svg); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if md.Len() == 0 {
		return fmt.Errorf("neither %s nor %s found", filepath.Join(in, "bench.txt"), filepath.Join(in, "sidecar.json"))
	}
	return write(filepath.Join(in, "summary.md"), md.String())
}

// scaleSVG draws Benchmark<top>/n=<N>/impl=<impl>: one line per impl, unit against N.
func scaleSVG(all []*series, top, unit, title, ylabel string, logY bool) (string, bool) {
	var ss []lineSeries
	idx := map[string]int{}
	for _, s := range all {
		rest, ok := strings.CutPrefix(s.group, "Benchmark"+top+"/n=")
		if !ok || len(s.vals[unit]) == 0 {
			continue
		}
		n, err := strconv.ParseFloat(rest, 64)
		if err != nil {
			continue
		}
		i, ok := idx[s.impl]
		if !ok {
			i = len(ss)
			idx[s.impl] = i
			ss = append(ss, lineSeries{name: s.impl})
		}
		lo, hi := quartiles(s.vals[unit]) // min–max would let one noisy run set the scale
		l := &ss[i]
		l.x, l.y, l.lo, l.hi = append(l.x, n), append(l.y, median(s.vals[unit])), append(l.lo, lo), append(l.hi, hi)
	}
	if len(ss) == 0 {
		return "", false
	}
	return lines(title+" (median, whiskers: quartiles)", "endpoints (log scale)", ylabel, ss, logY), true
}

// latencySVGs draws, for each concurrency, the latency percentiles of each setup.
func latencySVGs(rep *loadgen.Report) map[int]string {
	out := map[int]string{}
	byConc := map[int][]loadgen.Summary{}
	var concs []int
	for _, s := range rep.Summaries {
		if _, ok := byConc[s.Concurrency]; !ok {
			concs = append(concs, s.Concurrency)
		}
		byConc[s.Concurrency] = append(byConc[s.Concurrency], s)
	}
	for _, c := range concs {
		ss := byConc[c]
		var legend []string
		for _, s := range ss {
			legend = append(legend, s.Setup)
		}
		var groups []barGroup
		for _, p := range []struct {
			name string
			get  func(loadgen.Summary) loadgen.Stat
		}{
			{"p50", func(s loadgen.Summary) loadgen.Stat { return s.P50 }},
			{"p90", func(s loadgen.Summary) loadgen.Stat { return s.P90 }},
			{"p99", func(s loadgen.Summary) loadgen.Stat { return s.P99 }},
			{"p99.9", func(s loadgen.Summary) loadgen.Stat { return s.P999 }},
		} {
			g := barGroup{label: p.name}
			for _, s := range ss {
				st := p.get(s)
				g.vals, g.lo, g.hi = append(g.vals, st.Median), append(g.lo, st.Min), append(g.hi, st.Max)
				g.titles = append(g.titles, fmt.Sprintf("%s %s: %.1f µs [%.1f – %.1f]", s.Setup, p.name, st.Median, st.Min, st.Max))
			}
			groups = append(groups, g)
		}
		title := fmt.Sprintf("Loopback GET latency, %d worker(s), %d round(s) (median, whiskers min–max)", c, ss[0].Rounds)
		out[c] = bars(title, "µs (log scale)", legend, groups, true)
	}
	return out
}
