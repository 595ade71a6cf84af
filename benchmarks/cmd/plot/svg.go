package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// A small hand-written SVG plotter: one chart of grouped bars or of lines, with axes, ticks,
// a legend and min–max whiskers. No dependencies.

var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948"}

type svg struct {
	b    strings.Builder
	w, h float64
}

func newSVG(w, h float64) *svg {
	s := &svg{w: w, h: h}
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&s.b, `<rect width="%g" height="%g" fill="white"/>`+"\n", w, h)
	return s
}

func (s *svg) line(x1, y1, x2, y2 float64, stroke string, width float64, dash bool) {
	d := ""
	if dash {
		d = ` stroke-dasharray="3,3"`
	}
	fmt.Fprintf(&s.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%g"%s/>`+"\n", x1, y1, x2, y2, stroke, width, d)
}

func (s *svg) rect(x, y, w, h float64, fill string, title string) {
	fmt.Fprintf(&s.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n", x, y, w, h, fill, html.EscapeString(title))
}

func (s *svg) circle(x, y, r float64, fill, title string) {
	fmt.Fprintf(&s.b, `<circle cx="%.1f" cy="%.1f" r="%g" fill="%s"><title>%s</title></circle>`+"\n", x, y, r, fill, html.EscapeString(title))
}

func (s *svg) polyline(xs, ys []float64, stroke string) {
	var pts []string
	for i := range xs {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", xs[i], ys[i]))
	}
	fmt.Fprintf(&s.b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), stroke)
}

func (s *svg) text(x, y float64, anchor, txt string, extra string) {
	fmt.Fprintf(&s.b, `<text x="%.1f" y="%.1f" text-anchor="%s"%s>%s</text>`+"\n", x, y, anchor, extra, html.EscapeString(txt))
}

func (s *svg) String() string { return s.b.String() + "</svg>\n" }

// axis maps values to pixels, linearly or logarithmically.
type axis struct {
	lo, hi   float64 // data range
	p0, p1   float64 // pixel range
	log      bool
	unit     string
	tickVals []float64
}

func (a axis) at(v float64) float64 {
	if a.log {
		v, lo, hi := math.Log10(math.Max(v, a.lo)), math.Log10(a.lo), math.Log10(a.hi)
		return a.p0 + (v-lo)/(hi-lo)*(a.p1-a.p0)
	}
	return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0)
}

// niceLinear returns an axis from 0 to a round number above max, with about 5 ticks.
func niceLinear(max, p0, p1 float64) axis {
	if max <= 0 || math.IsNaN(max) {
		max = 1
	}
	step := math.Pow(10, math.Floor(math.Log10(max/5)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if max/(step*m) <= 6 {
			step *= m
			break
		}
	}
	hi := math.Ceil(max*1.05/step) * step
	a := axis{lo: 0, hi: hi, p0: p0, p1: p1}
	for v := 0.0; v <= hi+step/2; v += step {
		a.tickVals = append(a.tickVals, v)
	}
	return a
}

// niceLog returns a log axis over whole decades covering [min, max].
func niceLog(min, max, p0, p1 float64) axis {
	lo := math.Pow(10, math.Floor(math.Log10(min)))
	hi := math.Pow(10, math.Ceil(math.Log10(max)))
	if hi <= lo {
		hi = lo * 10
	}
	a := axis{lo: lo, hi: hi, p0: p0, p1: p1, log: true}
	for v := lo; v <= hi*1.001; v *= 10 {
		a.tickVals = append(a.tickVals, v)
	}
	return a
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e6) == 0:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3 && math.Mod(v, 1e3) == 0:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

// frame draws the y grid and labels, the title and the legend.
func (s *svg) frame(title, ylabel string, y axis, left, right float64, legend []string) {
	s.text(s.w/2, 22, "middle", title, ` font-size="15" font-weight="bold"`)
	for _, v := range y.tickVals {
		py := y.at(v)
		s.line(left, py, right, py, "#ddd", 1, false)
		s.text(left-6, py+4, "end", tickLabel(v), "")
	}
	s.line(left, y.p0, left, y.p1, "#333", 1, false)
	s.line(left, y.p0, right, y.p0, "#333", 1, false)
	fmt.Fprintf(&s.b, `<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>`+"\n", (y.p0+y.p1)/2, (y.p0+y.p1)/2, html.EscapeString(ylabel))
	lx := left
	for i, name := range legend {
		s.rect(lx, 34, 12, 12, palette[i%len(palette)], name)
		s.text(lx+16, 44, "start", name, "")
		lx += 26 + 7*float64(len(name))
	}
}

// barGroup is one group of bars on the x axis; vals[i] belongs to the legend's i-th series.
type barGroup struct {
	label        string
	vals, lo, hi []float64
	titles       []string
}

// bars draws grouped bars with min–max whiskers.
func bars(title, ylabel string, legend []string, groups []barGroup, logY bool) string {
	const w, h, left, right, top, bottom = 760.0, 420.0, 70.0, 740.0, 60.0, 370.0
	s := newSVG(w, h)
	mn, mx := math.Inf(1), 0.0
	for _, g := range groups {
		for i, v := range g.vals {
			if math.IsNaN(v) {
				continue
			}
			mn, mx = math.Min(mn, math.Min(v, g.lo[i])), math.Max(mx, math.Max(v, g.hi[i]))
		}
	}
	var y axis
	if logY {
		y = niceLog(math.Max(mn, 1e-3), mx, bottom, top)
	} else {
		y = niceLinear(mx, bottom, top)
	}
	s.frame(title, ylabel, y, left, right, legend)
	gw := (right - left) / float64(len(groups))
	bw := gw * 0.8 / float64(len(legend))
	for gi, g := range groups {
		x0 := left + float64(gi)*gw + gw*0.1
		for i, v := range g.vals {
			if math.IsNaN(v) {
				continue
			}
			x := x0 + float64(i)*bw
			py := y.at(v)
			s.rect(x, py, bw-2, bottom-py, palette[i%len(palette)], g.titles[i])
			cx := x + (bw-2)/2
			s.line(cx, y.at(g.lo[i]), cx, y.at(g.hi[i]), "#222", 1, false)
			s.line(cx-3, y.at(g.lo[i]), cx+3, y.at(g.lo[i]), "#222", 1, false)
			s.line(cx-3, y.at(g.hi[i]), cx+3, y.at(g.hi[i]), "#222", 1, false)
		}
		s.text(left+float64(gi)*gw+gw/2, bottom+18, "middle", g.label, "")
	}
	return s.String()
}

// lineSeries is one line of a line chart over a shared x.
type lineSeries struct {
	name         string
	x, y, lo, hi []float64
}

// lines draws lines over a log x axis with whiskers (lo–hi) at every point, over a linear or
// a log y axis.
func lines(title, xlabel, ylabel string, ss []lineSeries, logY bool) string {
	const w, h, left, right, top, bottom = 760.0, 420.0, 70.0, 720.0, 60.0, 360.0
	s := newSVG(w, h)
	xmin, xmax, ymin, ymax := math.Inf(1), 0.0, math.Inf(1), 0.0
	var legend []string
	for _, l := range ss {
		legend = append(legend, l.name)
		for i := range l.x {
			xmin, xmax = math.Min(xmin, l.x[i]), math.Max(xmax, l.x[i])
			ymin, ymax = math.Min(ymin, l.lo[i]), math.Max(ymax, l.hi[i])
		}
	}
	x := niceLog(xmin, xmax, left+20, right-20)
	y := niceLinear(ymax, bottom, top)
	if logY {
		y = niceLog(math.Max(ymin, 1e-3), ymax, bottom, top)
	}
	s.frame(title, ylabel, y, left, right, legend)
	for _, v := range x.tickVals {
		px := x.at(v)
		s.line(px, bottom, px, bottom+5, "#333", 1, false)
		s.text(px, bottom+18, "middle", tickLabel(v), "")
	}
	s.text((left+right)/2, bottom+38, "middle", xlabel, "")
	for i, l := range ss {
		c := palette[i%len(palette)]
		var px, py []float64
		for j := range l.x {
			px, py = append(px, x.at(l.x[j])), append(py, y.at(l.y[j]))
		}
		s.polyline(px, py, c)
		for j := range l.x {
			s.line(px[j], y.at(l.lo[j]), px[j], y.at(l.hi[j]), c, 1, false)
			s.circle(px[j], py[j], 3.5, c, fmt.Sprintf("%s n=%g: %.3g", l.name, l.x[j], l.y[j]))
		}
	}
	return s.String()
}
