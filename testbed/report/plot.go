package report

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// The size of every plot, and the margins around its data area: the left
// and bottom ones hold the axes' tick labels and titles, the right one
// the legend.
const (
	plotW, plotH                               = 800, 400
	marginL, marginR, marginT, marginB float64 = 72, 196, 40, 56
)

// palette colours the curves in order; reference lines are grey.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// point is a data point.
type point struct{ x, y float64 }

// curve is a data series, drawn as one SVG <path>.
type curve struct {
	name string
	pts  []point
	// step draws a staircase (the value holds until the next point)
	// instead of straight segments; markers adds a dot at each point.
	step, markers bool
}

// refLine is a dashed reference line across the whole data area: vertical
// at x = at, or horizontal at y = at.
type refLine struct {
	name     string
	vertical bool
	at       float64
}

// plot is one chart: a title, two labelled axes with ticks, curves,
// reference lines and a legend. Fill it in and call svg.
type plot struct {
	title, xLabel, yLabel string
	curves                []curve
	refs                  []refLine
	// logX puts the x axis on a log scale (for values spanning decades);
	// only positive x values are drawn. A linear x axis starts at zero.
	logX bool
	// yInclude are values the y axis spans whatever the data (0 and 1
	// for a fraction, say).
	yInclude []float64
}

// axis maps data values along one dimension to pixels.
type axis struct {
	lo, hi   float64 // data range (log10 of it for a log axis)
	log      bool
	from, to float64 // pixel range
	ticks    []float64
}

func (a axis) px(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	return a.from + (v-a.lo)/(a.hi-a.lo)*(a.to-a.from)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// newAxis fits a range with round ticks around the finite values vs.
func newAxis(vs []float64, log, zero bool, from, to float64) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		if finite(v) && (!log || v > 0) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if lo > hi { // no data
		lo, hi = 0, 1
		if log {
			lo = 1
		}
	}
	a := axis{log: log, from: from, to: to}
	if log {
		a.lo, a.hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if a.hi == a.lo {
			a.hi++
		}
		for e := a.lo; e <= a.hi; e++ {
			for _, m := range []float64{1, 2, 5} {
				if v := m * math.Pow(10, e); math.Log10(v) <= a.hi+1e-9 {
					a.ticks = append(a.ticks, v)
				}
			}
		}
		return a
	}
	if zero {
		lo = min(lo, 0)
	}
	if hi-lo < 1e-9*max(1, math.Abs(hi)) { // one value: widen around it
		d := max(1, math.Abs(hi)/10)
		if zero && lo >= 0 {
			hi += d
		} else {
			lo, hi = lo-d, hi+d
		}
	}
	step := niceStep((hi - lo) / 5)
	a.lo, a.hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	for i := 0; ; i++ {
		v := a.lo + float64(i)*step
		if v > a.hi+step/2 {
			break
		}
		a.ticks = append(a.ticks, v)
	}
	return a
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// tickLabel prints a tick value with as many decimals as the ticks'
// spacing needs.
func tickLabel(a axis, i int) string {
	v := a.ticks[i]
	if a.log || len(a.ticks) < 2 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	step, dec := a.ticks[1]-a.ticks[0], 0
	for ; dec < 6 && math.Abs(step-math.Round(step)) > 1e-9*max(1, step); dec++ {
		step *= 10
	}
	if math.Abs(v) < 1e-9*(a.ticks[1]-a.ticks[0]) {
		v = 0 // no "-0.0"
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// Longest title and legend entry, in characters, that fit the plot.
const maxTitle, maxLegend = 88, 24

// clip shortens s to n characters, ending it with an ellipsis.
func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// esc escapes text for XML (and HTML) content and attribute values.
func esc(s string) string { return html.EscapeString(s) }

// svg renders the plot as a standalone SVG document.
func (p *plot) svg() string {
	var xs, ys []float64
	for _, c := range p.curves {
		for _, pt := range c.pts {
			xs, ys = append(xs, pt.x), append(ys, pt.y)
		}
	}
	for _, r := range p.refs {
		if r.vertical {
			xs = append(xs, r.at)
		} else {
			ys = append(ys, r.at)
		}
	}
	left, right, top, bottom := marginL, plotW-marginR, marginT, plotH-marginB
	ax := newAxis(xs, p.logX, !p.logX, left, right)
	ay := newAxis(append(ys, p.yInclude...), false, false, bottom, top)

	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	f("<title>%s</title>\n", esc(p.title))
	f(`<rect width="%d" height="%d" fill="#fff"/>`+"\n", plotW, plotH)
	f(`<text x="%d" y="24" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", plotW/2, esc(clip(p.title, maxTitle)))

	// Grid, ticks and tick labels.
	for i, v := range ax.ticks {
		x := ax.px(v)
		f(`<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#e5e5e5"/>`+"\n", x, top, x, bottom)
		f(`<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#000"/>`+"\n", x, bottom, x, bottom+5)
		f(`<text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", x, bottom+18, tickLabel(ax, i))
	}
	for i, v := range ay.ticks {
		y := ay.px(v)
		f(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, y, right, y)
		f(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#000"/>`+"\n", left-5, y, left, y)
		f(`<text x="%g" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-9, y, tickLabel(ay, i))
	}
	// Axes and their titles.
	f(`<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#000"/>`+"\n", left, bottom, right, bottom)
	f(`<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#000"/>`+"\n", left, top, left, bottom)
	f(`<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", (left+right)/2, bottom+42, esc(p.xLabel))
	f(`<text x="16" y="%g" text-anchor="middle" transform="rotate(-90 16 %g)">%s</text>`+"\n", (top+bottom)/2, (top+bottom)/2, esc(p.yLabel))

	// Reference lines, then the curves over them.
	for _, r := range p.refs {
		if r.vertical {
			x := ax.px(r.at)
			f(`<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n", x, top, x, bottom)
		} else {
			y := ay.px(r.at)
			f(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n", left, y, right, y)
		}
	}
	for i, c := range p.curves {
		color := palette[i%len(palette)]
		var d, dots strings.Builder
		n := 0
		for _, pt := range c.pts {
			if !finite(pt.x) || !finite(pt.y) || p.logX && pt.x <= 0 {
				continue
			}
			x, y := ax.px(pt.x), ay.px(pt.y)
			switch {
			case n == 0:
				fmt.Fprintf(&d, "M%.1f %.1f", x, y)
			case c.step:
				fmt.Fprintf(&d, " H%.1f V%.1f", x, y)
			default:
				fmt.Fprintf(&d, " L%.1f %.1f", x, y)
			}
			if c.markers {
				fmt.Fprintf(&dots, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x, y, color)
			}
			n++
		}
		f(`<path d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"><title>%s</title></path>`+"\n", d.String(), color, esc(c.name))
		b.WriteString(dots.String())
	}

	// Legend: one entry per curve, then per reference line.
	lx, ly := right+16, top+8
	for i, c := range p.curves {
		f(`<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="2"/>`+"\n", lx, ly, lx+24, ly, palette[i%len(palette)])
		f(`<text x="%g" y="%g" dominant-baseline="middle">%s</text>`+"\n", lx+30, ly, esc(clip(c.name, maxLegend)))
		ly += 20
	}
	for _, r := range p.refs {
		f(`<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n", lx, ly, lx+24, ly)
		f(`<text x="%g" y="%g" dominant-baseline="middle">%s</text>`+"\n", lx+30, ly, esc(clip(r.name, maxLegend)))
		ly += 20
	}
	b.WriteString("</svg>\n")
	return b.String()
}
