package explorer

import (
	"fmt"
	"math"
	"strings"

	"github.com/fapo-dev/fapo/engine/attribution"
	"github.com/fapo-dev/fapo/engine/scoring"
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
	Level  string
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
