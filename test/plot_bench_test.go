//go:build e2e

package test

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotRollouts draws BenchmarkRollout's results in a PNG: seconds against sites, both on log
// scales, one line for the whole rollout and one per wave.
func plotRollouts(file string, results []rolloutResult) error {
	results = slices.Clone(results)
	slices.SortFunc(results, func(a, b rolloutResult) int { return a.sites - b.sites })
	p := plot.New()
	p.Title.Text = "fleetwave: three-wave rollout, no bake, simulated sites (P4)"
	p.X.Label.Text = "sites"
	p.Y.Label.Text = "seconds"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true

	series := []struct {
		name  string
		value func(rolloutResult) float64
		color color.Color
	}{
		{"rollout (started → last wave healthy)", func(r rolloutResult) float64 { return r.total.Seconds() }, color.RGBA{R: 200, A: 255}},
		{"wave canary (1 site)", func(r rolloutResult) float64 { return r.waves["canary"].Seconds() }, color.RGBA{G: 140, A: 255}},
		{"wave r1 (10 %)", func(r rolloutResult) float64 { return r.waves["r1"].Seconds() }, color.RGBA{B: 200, A: 255}},
		{"wave rest (90 %)", func(r rolloutResult) float64 { return r.waves["rest"].Seconds() }, color.RGBA{R: 150, B: 150, A: 255}},
	}
	for i, s := range series {
		pts := make(plotter.XYs, len(results))
		for j, r := range results {
			pts[j] = plotter.XY{X: float64(r.sites), Y: max(s.value(r), 0.001)}
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", s.name, err)
		}
		line.Color, points.Color = s.color, s.color
		points.Shape = draw.CircleGlyph{}
		if i > 0 {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	return p.Save(18*vg.Centimeter, 12*vg.Centimeter, file)
}
