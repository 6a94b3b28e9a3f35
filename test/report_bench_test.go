//go:build e2e

package test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/workflows"
)

// BenchmarkReport rolls out one commit to 1,000 and 10,000 simulated sites (benchPlan, no bake,
// one built-in policy) on a real Temporal dev server, then measures what the evidence of that
// rollout costs: its report built from the closed workflow's history (what `fleetwave report`
// does, replay of the history for the policy inputs included), the sizes of
// its Markdown, JSON and HTML, and the commit of the Markdown and JSON to an evidence branch of
// the 10,000-branch repo (what serve --evidence-branch does). `make bench` runs it.
func BenchmarkReport(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run("sites="+strconv.Itoa(n), func(b *testing.B) {
			b.StopTimer()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// A built-in policy that allows every wave: each wave has a decision, whose input
			// the report recovers by replaying the history (the rest wave's holds its 9,000 sites).
			plan := benchPlan(n, 0, 30*time.Second) + fmt.Sprintf("  policies: {maxSitesPerWave: %d}\n", n)
			f := startBenchFleet(ctx, b, n, plan, 300*time.Millisecond, 2*time.Second, false, nil)
			run, err := f.fw.Start(ctx, workflows.RolloutInput{Fleet: "bench", Commit: f.commit})
			if err != nil {
				b.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
			defer wcancel()
			if err := run.Get(wctx, nil); err != nil {
				b.Fatalf("%d sites: %v", n, err)
			}
			if r, err := f.fw.Report(ctx, "default", run.GetID(), report.Links{}); err != nil || r.PolicyInputsError != "" ||
				len(r.Waves) != 3 || len(r.Waves[2].Policy) != 1 || r.Waves[2].Policy[0].Input == nil || len(r.Waves[2].Policy[0].Input.Wave.Sites) != n-1-n/10 {
				b.Fatalf("%d sites: the report's decisions lack their inputs: %v", n, err)
			}
			repo, err := gitops.Open(ctx, f.url)
			if err != nil {
				b.Fatal(err)
			}
			var build, write time.Duration
			var md, js, html []byte
			for i := range b.N {
				runtime.GC()
				b.StartTimer()
				start := time.Now()
				r, err := f.fw.Report(ctx, "default", run.GetID(), report.Links{})
				if err != nil {
					b.Fatal(err)
				}
				md = []byte(report.Markdown(r))
				if js, err = report.JSON(r); err != nil {
					b.Fatal(err)
				}
				if html, err = report.HTML(r); err != nil {
					b.Fatal(err)
				}
				build += time.Since(start)
				start = time.Now()
				if _, err := repo.WriteFiles(ctx, "evidence", map[string][]byte{
					"evidence/bench/" + strconv.Itoa(i) + ".md": md, "evidence/bench/" + strconv.Itoa(i) + ".json": js}, "evidence: bench"); err != nil {
					b.Fatal(err)
				}
				write += time.Since(start)
				b.StopTimer()
			}
			b.ReportMetric(build.Seconds()/float64(b.N), "s/report")
			b.ReportMetric(write.Seconds()/float64(b.N), "s/evidence-commit")
			b.ReportMetric(float64(len(md))/1024, "KiB-md")
			b.ReportMetric(float64(len(js))/1024, "KiB-json")
			b.ReportMetric(float64(len(html))/1024, "KiB-html")
		})
	}
}
