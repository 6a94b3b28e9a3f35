//go:build e2e

package test

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/workflows"
)

var rolloutPlot = flag.String("bench.plot", "", "BenchmarkRollout draws its results in this PNG file")

// benchServers are the Temporal dev servers the rollout benchmarks run on: as it comes, and
// with devtemporal.FastQueues (its one history shard's queues not limited to 20 loads a
// second), closer to a production cluster, whose workflows spread over many shards.
var benchServers = []struct {
	name   string
	config []string
}{{"stock", nil}, {"fastqueues", devtemporal.FastQueues}}

// rolloutResult is one measured rollout of BenchmarkRollout.
type rolloutResult struct {
	server string
	sites  int
	total  time.Duration            // started → succeeded (the last wave healthy)
	waves  map[string]time.Duration // each wave workflow, started → closed
	push   map[string]time.Duration // each wave's promotion: its first Promote scheduled → its last completed
	rss    int64
}

// BenchmarkRollout measures P2 and P4 of docs/benchmarks.md: a three-wave rollout with no
// bake (benchPlan: a wave is its promotion, its convergence and one health round) to 10, 100,
// 1,000 and 10,000 simulated sites on a real Temporal dev server, the
// settings of `serve --driver sim` (the fleet fetches every 300ms, convergence is polled
// every 2s unless the fleet tells a change first), sites applying a commit as soon as they
// fetch it. It reports the time from starting the rollout (what a push event does) to its
// success, each wave's time, and the peak RSS of the process (worker, simulated fleet and git
// together). With -bench.plot FILE it draws the times in a PNG. `make bench` runs it.
func BenchmarkRollout(b *testing.B) {
	var results []rolloutResult
	for _, server := range benchServers {
		for _, n := range []int{10, 100, 1000, 10000} {
			b.Run("server="+server.name+"/sites="+strconv.Itoa(n), func(b *testing.B) {
				for range b.N {
					r := measureRollout(b, n, server.config)
					r.server = server.name
					results = append(results, r)
				}
			})
		}
	}
	if *rolloutPlot != "" && len(results) > 0 {
		if err := plotRollouts(*rolloutPlot, results); err != nil {
			b.Fatal(err)
		}
	}
}

func measureRollout(b *testing.B, n int, serverConfig []string) rolloutResult {
	b.StopTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := startBenchFleet(ctx, b, n, benchPlan(n, 0, 30*time.Second), 300*time.Millisecond, 2*time.Second, false, serverConfig)
	debug.FreeOSMemory() // the last size's heap, returned to the OS before measuring this one
	resetPeakRSS()

	b.StartTimer()
	start := time.Now()
	run, err := f.fw.Start(ctx, workflows.RolloutInput{Fleet: "bench", Commit: f.commit})
	if err != nil {
		b.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer wcancel()
	rerr := run.Get(wctx, nil)
	b.StopTimer()
	res := rolloutResult{sites: n, total: time.Since(start), waves: map[string]time.Duration{}, push: map[string]time.Duration{}, rss: peakRSS()}
	if rerr != nil {
		b.Fatalf("%d sites: rollout failed after %s: %v", n, res.total, rerr)
	}
	var line []string
	for _, wave := range []string{"canary", "r1", "rest"} {
		d, err := f.tc.DescribeWorkflow(ctx, workflows.WaveID(run.GetID(), wave), "")
		if err != nil {
			b.Fatal(err)
		}
		info := d.RawResponse.GetWorkflowExecutionInfo()
		took := info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime())
		res.waves[wave] = took
		res.push[wave] = promotionTime(ctx, b, f.tc, workflows.WaveID(run.GetID(), wave))
		line = append(line, fmt.Sprintf("%s %s (promotion %s)", wave, took.Round(time.Millisecond), res.push[wave].Round(time.Millisecond)))
	}
	b.Logf("%d sites: succeeded in %s (%s); peak RSS %d MiB", n, res.total.Round(time.Millisecond), strings.Join(line, ", "), res.rss>>20)
	b.ReportMetric(res.total.Seconds(), "s/rollout")
	for _, wave := range []string{"canary", "r1", "rest"} {
		b.ReportMetric(float64(res.waves[wave].Milliseconds()), "ms/wave-"+wave)
	}
	b.ReportMetric(float64(res.rss)/(1<<20), "MiB-peak-RSS")
	return res
}

// promotionTime is how long the wave's promotion took: from its first Promote activity
// scheduled to its last one completed.
func promotionTime(ctx context.Context, b *testing.B, tc client.Client, id string) time.Duration {
	first, _, last := activitySpan(ctx, b, tc, id, "Promote")
	return last.Sub(first)
}

// activitySpan reads the workflow's history for the activities of type name: when the first
// was scheduled, and when the first and the last completed (zero times when none did).
func activitySpan(ctx context.Context, b *testing.B, tc client.Client, id, name string) (scheduled, firstDone, lastDone time.Time) {
	ours := map[int64]bool{}
	for _, e := range historyEvents(ctx, b, tc, id) {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == name {
			ours[e.GetEventId()] = true
			if scheduled.IsZero() {
				scheduled = e.GetEventTime().AsTime()
			}
		}
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && ours[a.GetScheduledEventId()] {
			lastDone = e.GetEventTime().AsTime()
			if firstDone.IsZero() {
				firstDone = lastDone
			}
		}
	}
	return scheduled, firstDone, lastDone
}

// historyEvents reads the whole history of the workflow's latest run.
func historyEvents(ctx context.Context, b testing.TB, tc client.Client, id string) []*historypb.HistoryEvent {
	var events []*historypb.HistoryEvent
	it := tc.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		events = append(events, e)
	}
	return events
}
