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
// scales, the whole rollout on each dev server, and two waves and a promotion on the faster.
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

	total := func(r rolloutResult) float64 { return r.total.Seconds() }
	wave := func(name string) func(rolloutResult) float64 {
		return func(r rolloutResult) float64 { return r.waves[name].Seconds() }
	}
	push := func(r rolloutResult) float64 { return r.push["rest"].Seconds() }
	series := []struct {
		name, server string
		value        func(rolloutResult) float64
		color        color.Color
	}{
		{"rollout, stock dev server (started → last wave healthy)", "stock", total, color.RGBA{R: 200, A: 255}},
		{"rollout, dev server with FastQueues", "fastqueues", total, color.RGBA{B: 200, A: 255}},
		{"wave canary (1 site), FastQueues", "fastqueues", wave("canary"), color.RGBA{G: 140, A: 255}},
		{"wave rest (90 %), FastQueues", "fastqueues", wave("rest"), color.RGBA{R: 150, B: 150, A: 255}},
		{"its promotion (git pushes of 500 sites each)", "fastqueues", push, color.RGBA{R: 120, G: 120, B: 120, A: 255}},
	}
	for i, s := range series {
		var pts plotter.XYs
		for _, r := range results {
			if r.server == s.server {
				pts = append(pts, plotter.XY{X: float64(r.sites), Y: max(s.value(r), 0.001)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", s.name, err)
		}
		line.Color, points.Color = s.color, s.color
		points.Shape = draw.CircleGlyph{}
		if i > 1 {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	p.Y.Max *= 8 // room for the legend above the lines
	return p.Save(18*vg.Centimeter, 12*vg.Centimeter, file)
}
