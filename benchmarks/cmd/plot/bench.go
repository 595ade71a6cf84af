package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// sample is every value one benchmark reported for one unit, in the order of the runs.
type series struct {
	name  string               // full name without the -GOMAXPROCS suffix
	group string               // name with the impl= element removed
	impl  string               // value of the impl= element
	vals  map[string][]float64 // unit → values, one per run
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads `go test -bench` output: every line that starts with "Benchmark".
func parseBench(r io.Reader) ([]*series, error) {
	var order []*series
	byName := map[string]*series{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		s := byName[name]
		if s == nil {
			s = &series{name: name, vals: map[string][]float64{}}
			var rest []string
			for _, el := range strings.Split(name, "/") {
				if v, ok := strings.CutPrefix(el, "impl="); ok {
					s.impl = v
				} else {
					rest = append(rest, el)
				}
			}
			s.group = strings.Join(rest, "/")
			byName[name] = s
			order = append(order, s)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("plot: %q: %v", sc.Text(), err)
			}
			s.vals[f[i+1]] = append(s.vals[f[i+1]], v)
		}
	}
	return order, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// quartiles returns the first and third quartiles (linear interpolation).
func quartiles(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	q := func(p float64) float64 {
		f := p * float64(len(s)-1)
		i := int(f)
		if i+1 >= len(s) {
			return s[len(s)-1]
		}
		return s[i] + (f-float64(i))*(s[i+1]-s[i])
	}
	return q(0.25), q(0.75)
}

func minMax(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(xs), slices.Max(xs)
}

// find returns the series of group and impl, or nil.
func find(all []*series, group, impl string) *series {
	for _, s := range all {
		if s.group == group && s.impl == impl {
			return s
		}
	}
	return nil
}

// summary renders, for every group, each impl against the group's first impl (its baseline):
// the median, the ratio of medians, and the range of the ratios of runs paired by index
// (run.sh runs every benchmark once per round, so the i-th runs are from the same round).
func summary(all []*series) string {
	var b strings.Builder
	var groups []string
	for _, s := range all {
		if s.impl != "" && !slices.Contains(groups, s.group) {
			groups = append(groups, s.group)
		}
	}
	// Merge groups that share their top-level benchmark into one table.
	top := func(g string) string { t, _, _ := strings.Cut(g, "/"); return t }
	var tops []string
	for _, g := range groups {
		if !slices.Contains(tops, top(g)) {
			tops = append(tops, top(g))
		}
	}
	for _, t := range tops {
		units := []string{}
		for _, s := range all {
			if top(s.group) != t || s.impl == "" {
				continue
			}
			for u := range s.vals {
				if !slices.Contains(units, u) && u != "B/op" {
					units = append(units, u)
				}
			}
		}
		slices.SortFunc(units, func(a, b string) int { return unitRank(a) - unitRank(b) })
		fmt.Fprintf(&b, "\n### %s\n\n", t)
		main := units[0]
		fmt.Fprintf(&b, "| case | impl | %s (median) | ratio to baseline [range of paired runs] |", main)
		for _, u := range units[1:] {
			fmt.Fprintf(&b, " %s |", u)
		}
		b.WriteString("\n|---|---|---|---|")
		for range units[1:] {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, g := range groups {
			if top(g) != t {
				continue
			}
			var base *series
			for _, s := range all {
				if s.group != g || s.impl == "" {
					continue
				}
				if base == nil {
					base = s
				}
				c := strings.TrimPrefix(strings.TrimPrefix(g, t), "/")
				if c == "" {
					c = "–"
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s |", c, s.impl, num(median(s.vals[main])), ratio(s.vals[main], base.vals[main], s == base))
				for _, u := range units[1:] {
					fmt.Fprintf(&b, " %s |", num(median(s.vals[u])))
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

func unitRank(u string) int {
	switch u {
	case "ns/op":
		return 0
	case "B/endpoint", "B/key":
		return 1
	case "ns/endpoint":
		return 2
	case "allocs/op":
		return 3
	}
	return 4
}

func ratio(x, base []float64, isBase bool) string {
	if isBase {
		return "baseline"
	}
	mb := median(base)
	if mb == 0 || math.IsNaN(mb) {
		return "n/a"
	}
	var rs []float64
	for i := range min(len(x), len(base)) {
		if base[i] != 0 {
			rs = append(rs, x[i]/base[i])
		}
	}
	lo, hi := minMax(rs)
	return fmt.Sprintf("%.2f× [%.2f – %.2f]", median(x)/mb, lo, hi)
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
