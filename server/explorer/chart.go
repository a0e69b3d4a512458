package explorer

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/fapo-dev/fapo/engine/attribution"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Chart geometry, in SVG user units.
const (
	chartW, chartH  = 720.0, 280.0
	padL, padR      = 48.0, 16.0
	padT, padB      = 30.0, 36.0
	barH, barGap    = 22.0, 8.0
	barLabelW       = 220.0
	barChartW       = 720.0
	barChartPadding = 12.0
)

// ScoreChart is the geometry of a session's score-over-iterations chart,
// computed here so the template only draws.
type ScoreChart struct {
	W, H       float64
	Left, Top  float64
	Right, Bot float64
	// TargetY is the target line; TargetLabel its text.
	TargetY     float64
	TargetLabel string
	// IncumbentPath is a step line through the incumbent's score.
	IncumbentPath string
	Points        []ChartPoint
	YTicks        []Tick
	XTicks        []Tick
}

// ChartPoint is one validation aggregate in the chart.
type ChartPoint struct {
	X, Y    float64
	Outcome string
	Variant string
	Title   string
}

// Tick is an axis label.
type Tick struct {
	Pos   float64
	Label string
	// Anchor is the label's text-anchor, "" for the template's default.
	Anchor string
}

func scoreChart(s *SessionView) *ScoreChart {
	c := &ScoreChart{W: chartW, H: chartH, Left: padL, Top: padT, Right: chartW - padR, Bot: chartH - padB}
	n := max(len(s.Points), 1)
	x := func(i int) float64 { // i is 1-based
		if n == 1 {
			return (c.Left + c.Right) / 2
		}
		return c.Left + 12 + float64(i-1)*(c.Right-c.Left-24)/float64(n-1)
	}
	top := scoring.MaxScore
	for _, p := range s.Points {
		top = math.Max(top, p.Value)
	}
	y := func(v float64) float64 { return c.Bot - math.Max(0, v)/top*(c.Bot-c.Top) }
	for v := 0.0; v <= top+1e-9; v += top / 4 {
		c.YTicks = append(c.YTicks, Tick{Pos: y(v), Label: fmt.Sprintf("%g", math.Round(v*10)/10)})
	}
	c.TargetY = y(s.Scope.Target.Min)
	c.TargetLabel = "target " + s.Scope.Target.String()
	var path strings.Builder
	for i, p := range s.Points {
		px, py := x(p.Iteration), y(p.Value)
		c.Points = append(c.Points, ChartPoint{X: px, Y: py, Outcome: p.Outcome, Variant: p.Variant,
			Title: fmt.Sprintf("#%d %s: %.2f on %d cases (%s)", p.Iteration, p.Variant, p.Value, p.Cases, p.Outcome)})
		c.XTicks = append(c.XTicks, Tick{Pos: px, Label: fmt.Sprint(p.Iteration)})
		iy := y(p.Incumbent)
		if i == 0 {
			fmt.Fprintf(&path, "M%.1f %.1f", px, iy)
			continue
		}
		fmt.Fprintf(&path, " H%.1f V%.1f", px, iy)
	}
	if len(s.Points) > 0 {
		fmt.Fprintf(&path, " H%.1f", c.Right)
	}
	c.IncumbentPath = path.String()
	return c
}

// BarChart is the geometry of the attribution clusters' bar chart.
type BarChart struct {
	W, H float64
	Bars []Bar
}

// Bar is one cluster.
type Bar struct {
	Y, W   float64
	Label  string
	Class  string
	Step   string
	Count  int
	Share  string
	Level  variant.Level
	LabelX float64
	BarX   float64
	TextX  float64
	TextY  float64
}

func clusterChart(cs []attribution.Cluster) *BarChart {
	if len(cs) == 0 {
		return nil
	}
	most := 0
	for _, c := range cs {
		most = max(most, c.Count)
	}
	b := &BarChart{W: barChartW, H: float64(len(cs))*(barH+barGap) + barChartPadding}
	span := barChartW - barLabelW - 120
	for i, c := range cs {
		w := math.Max(2, float64(c.Count)/float64(most)*span)
		y := barChartPadding/2 + float64(i)*(barH+barGap)
		b.Bars = append(b.Bars, Bar{Y: y, W: w, Label: c.Name(), Class: c.Class, Step: c.RootStep, Count: c.Count, Share: fmt.Sprintf("%.0f%%", c.Share*100),
			Level: c.Level, LabelX: barLabelW - 8, BarX: barLabelW, TextX: barLabelW + w + 6, TextY: y + barH*0.7})
	}
	return b
}

// ParetoChart is the geometry of a session's score against $ per case: one
// point per validation result (per task model when there are several),
// the Pareto front (no other point is both cheaper and better) joined by a
// step line, so the cost of a gain is visible before anyone accepts it.
type ParetoChart struct {
	W, H       float64
	Left, Top  float64
	Right, Bot float64
	Points     []ParetoPoint
	FrontPath  string
	YTicks     []Tick
	XTicks     []Tick
}

// ParetoPoint is one validation result in the Pareto chart.
type ParetoPoint struct {
	X, Y    float64
	Variant string
	Label   string
	Outcome string
	Front   bool
	Title   string
}

// paretoChart returns nil when no validation result has a cost (results
// recorded before costs were, or a session without validation yet).
func paretoChart(s *SessionView) *ParetoChart {
	var pts []ScorePoint
	for _, p := range s.Points {
		if p.USDPerCase > 0 {
			pts = append(pts, p)
		}
	}
	if len(pts) == 0 {
		return nil
	}
	c := &ParetoChart{W: chartW, H: chartH, Left: padL + 24, Top: padT, Right: chartW - padR, Bot: chartH - padB}
	hiX := 0.0
	top := scoring.MaxScore
	for _, p := range pts {
		hiX = math.Max(hiX, p.USDPerCase)
		top = math.Max(top, p.Value)
	}
	hiX *= 1.2 // room for the rightmost point's label
	x := func(v float64) float64 { return c.Left + v/hiX*(c.Right-c.Left) }
	y := func(v float64) float64 { return c.Bot - math.Max(0, v)/top*(c.Bot-c.Top) }
	for v := 0.0; v <= top+1e-9; v += top / 4 {
		c.YTicks = append(c.YTicks, Tick{Pos: y(v), Label: fmt.Sprintf("%g", math.Round(v*10)/10)})
	}
	for i := 0; i <= 4; i++ {
		v := hiX * float64(i) / 4
		c.XTicks = append(c.XTicks, Tick{Pos: x(v), Label: usdLabel(v), Anchor: []string{"start", "middle", "middle", "middle", "end"}[i]})
	}
	front := paretoFront(pts)
	for i, p := range pts {
		label := p.Variant
		if p.Model != "" {
			label += " · " + p.Model
		}
		c.Points = append(c.Points, ParetoPoint{X: x(p.USDPerCase), Y: y(p.Value), Variant: p.Variant, Label: label,
			Outcome: p.Outcome, Front: front[i],
			Title: fmt.Sprintf("%s: %.2f at %s per case (%s)", label, p.Value, usdLabel(p.USDPerCase), p.Outcome)})
	}
	// The front, cheapest first, as a staircase: each step up costs more.
	var onFront []ParetoPoint
	for _, p := range c.Points {
		if p.Front {
			onFront = append(onFront, p)
		}
	}
	slices.SortFunc(onFront, func(a, b ParetoPoint) int { return cmp.Compare(a.X, b.X) })
	var path strings.Builder
	for i, p := range onFront {
		if i == 0 {
			fmt.Fprintf(&path, "M%.1f %.1f", p.X, p.Y)
			continue
		}
		fmt.Fprintf(&path, " H%.1f V%.1f", p.X, p.Y)
	}
	c.FrontPath = path.String()
	return c
}

// paretoFront marks the points no other point dominates: at most as dear
// and at least as good, and strictly one of the two.
func paretoFront(pts []ScorePoint) []bool {
	out := make([]bool, len(pts))
	for i, p := range pts {
		out[i] = true
		for j, q := range pts {
			if i != j && dominates(q, p) {
				out[i] = false
				break
			}
		}
	}
	return out
}

func dominates(q, p ScorePoint) bool {
	return q.USDPerCase <= p.USDPerCase && q.Value >= p.Value && (q.USDPerCase < p.USDPerCase || q.Value > p.Value)
}

// usdLabel prints small dollar amounts with enough digits to tell apart.
func usdLabel(v float64) string {
	switch {
	case v == 0:
		return "$0"
	case v >= 0.01:
		return fmt.Sprintf("$%.3f", v)
	default:
		// Two significant digits, written out: $0.0000027, not $2.7e-06.
		p := math.Pow(10, math.Floor(math.Log10(v))-1)
		return "$" + strconv.FormatFloat(math.Round(v/p)*p, 'f', -1, 64)
	}
}
