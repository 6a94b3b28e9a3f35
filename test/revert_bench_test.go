//go:build e2e

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gitserver"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/workflows"
)

// revertRuns is how many reverts (and git CLI pushes) BenchmarkRevertLatency measures per
// transport.
const revertRuns = 50

// revertPlan: a canary and one more site, the canary's wave failing on its first unhealthy
// health round, so every rollout of a commit that degrades the canary ends in a revert.
const revertPlan = `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: bench}
spec:
  sites:
    - {name: s00000, labels: {tier: canary}}
    - {name: s00001}
  waves:
    - {name: canary, selector: {tier: canary}, bake: 0s}
    - {name: rest, bake: 0s}
  health: {interval: 30s, failureThreshold: 1, convergenceTimeout: 1m, unknownTimeout: 1m}
`

// BenchmarkRevertLatency measures P3 of docs/benchmarks.md, over file:// and over smart HTTP
// (git http-backend on 127.0.0.1), on each of benchServers: 50 rollouts of commits that degrade the canary on a real
// Temporal dev server, each ending in a revert. A revert's latency is from the health round
// that reached failureThreshold (its result recorded in the wave's history) to the Revert
// activity's completion (the revert commit is on the git server before then), read from the
// histories. In the same run, 50 git CLI pushes of one ready-made commit to the same
// repository. Reported: p50 and p95 of both, and the ratio of the p95s (target: at most 2).
func BenchmarkRevertLatency(b *testing.B) {
	for _, server := range benchServers {
		for _, overHTTP := range []bool{false, true} {
			name := "file"
			if overHTTP {
				name = "http"
			}
			b.Run("server="+server.name+"/git="+name, func(b *testing.B) {
				for range b.N {
					measureReverts(b, overHTTP, server.config)
				}
			})
		}
	}
}

func measureReverts(b *testing.B, overHTTP bool, serverConfig []string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := startBenchFleet(ctx, b, 2, revertPlan, 300*time.Millisecond, 2*time.Second, overHTTP, serverConfig)
	var reverts []time.Duration
	for i := range revertRuns {
		commit, err := gitserver.Commit(f.bare, fmt.Sprintf("app v%d, degrading the canary", i+3), map[string]string{
			"apps/app.yaml": fmt.Sprintf("version: %d\n", i+3), ".fleetwave/sim.yaml": "reconcileDelay: 0s\ndegraded: [s00000]\n"})
		if err != nil {
			b.Fatal(err)
		}
		run, err := f.fw.Start(ctx, workflows.RolloutInput{Fleet: "bench", Commit: commit})
		if err != nil {
			b.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		rerr := run.Get(wctx, nil)
		wcancel()
		if rerr == nil {
			b.Fatalf("run %d: the rollout of a degrading commit succeeded", i)
		}
		round, ok := lastEventTime(ctx, b, f.tc, workflows.WaveID(run.GetID(), "canary"), enumspb.EVENT_TYPE_MARKER_RECORDED)
		if !ok {
			b.Fatalf("run %d: no health round in the canary's history", i)
		}
		done, ok := revertCompleted(ctx, b, f.tc, run.GetID(), workflows.WaveID(run.GetID(), "canary"))
		if !ok {
			b.Fatalf("run %d: no completed Revert activity", i)
		}
		reverts = append(reverts, done.Sub(round))
	}

	// The git CLI, one commit per push, to the same repository, on a branch of its own.
	work := filepath.Join(b.TempDir(), "cli")
	gittest.Git(b, "", "clone", "--quiet", f.url, work)
	gittest.Git(b, work, "checkout", "--quiet", "-b", "cli")
	var pushes []time.Duration
	for i := range revertRuns {
		if err := os.WriteFile(filepath.Join(work, "cli.txt"), fmt.Appendf(nil, "%d\n", i), 0o644); err != nil {
			b.Fatal(err)
		}
		gittest.Git(b, work, "add", "cli.txt")
		gittest.Git(b, work, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "--quiet", "-m", fmt.Sprintf("cli %d", i))
		start := time.Now()
		gittest.Git(b, work, "push", "--quiet", "origin", "cli")
		pushes = append(pushes, time.Since(start))
	}

	rp50, rp95 := percentile(reverts, 50), percentile(reverts, 95)
	gp50, gp95 := percentile(pushes, 50), percentile(pushes, 95)
	b.Logf("%s: revert p50 %s p95 %s max %s; git CLI push p50 %s p95 %s; p95 ratio %.2f (%d runs each)", f.url[:4],
		rp50.Round(time.Millisecond), rp95.Round(time.Millisecond), slices.Max(reverts).Round(time.Millisecond),
		gp50.Round(time.Millisecond), gp95.Round(time.Millisecond), rp95.Seconds()/gp95.Seconds(), revertRuns)
	b.ReportMetric(float64(rp50.Milliseconds()), "ms-p50-revert")
	b.ReportMetric(float64(rp95.Milliseconds()), "ms-p95-revert")
	b.ReportMetric(float64(gp95.Milliseconds()), "ms-p95-git-push")
	b.ReportMetric(rp95.Seconds()/gp95.Seconds(), "p95-ratio")
}

// percentile is the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100
	return s[max(rank-1, 0)]
}

// lastEventTime returns the time of the last event of type t in the workflow's history.
func lastEventTime(ctx context.Context, b *testing.B, tc client.Client, id string, t enumspb.EventType) (time.Time, bool) {
	var at time.Time
	for _, e := range historyEvents(ctx, b, tc, id) {
		if e.GetEventType() == t {
			at = e.GetEventTime().AsTime()
		}
	}
	return at, !at.IsZero()
}

// revertCompleted returns when the first Revert activity of the workflows completed.
func revertCompleted(ctx context.Context, b *testing.B, tc client.Client, ids ...string) (time.Time, bool) {
	for _, id := range ids {
		if _, done, _ := activitySpan(ctx, b, tc, id, "Revert"); !done.IsZero() {
			return done, true
		}
	}
	return time.Time{}, false
}
