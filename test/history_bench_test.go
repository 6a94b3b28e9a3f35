//go:build e2e

package test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy/sim"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gitserver"
	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// The benchmark's bake: a health round, then a pause of historyInterval, until historyBake has
// passed since the wave converged. A history's events and bytes depend on the number of
// rounds, not on how long they take, and a 1h bake checked every 30s has 120 of them; with a
// round taking a few hundred milliseconds here, 2 minutes at 250ms gives at least that many
// (each wave's count is reported) without waiting an hour.
const (
	historyBake     = 2 * time.Minute
	historyInterval = 250 * time.Millisecond
)

// benchPlan is the rollout benchmarks' plan: n sites in 10 regions and three waves (one canary
// site, every site of region r1 (10 %), the rest), each promoted all at once and baking for
// bake, with a health round every interval.
func benchPlan(n int, bake, interval time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: bench}\nspec:\n  sites:\n")
	for i := range n {
		tier := ""
		if i == 0 {
			tier = ", tier: canary"
		}
		fmt.Fprintf(&b, "    - {name: s%05d, labels: {region: r%d%s}}\n", i, i%10, tier)
	}
	fmt.Fprintf(&b, "  waves:\n")
	fmt.Fprintf(&b, "    - {name: canary, selector: {tier: canary}, bake: %s}\n", bake)
	fmt.Fprintf(&b, "    - {name: r1, selector: {region: r1}, maxParallel: %d, bake: %s}\n", max(n/10, 1), bake)
	fmt.Fprintf(&b, "    - {name: rest, maxParallel: %d, bake: %s}\n", n, bake)
	fmt.Fprintf(&b, "  health: {interval: %s, failureThreshold: 3, convergenceTimeout: 10m, unknownTimeout: 5m}\n", interval)
	return b.String()
}

// workflowHistory is what one workflow's history holds.
type workflowHistory struct {
	ID          string
	Events      int
	Bytes       int
	LargestItem int // the largest event, an upper bound of its payloads
	LargestType string
	Rounds      int // health rounds: the timers between them, plus one
}

// BenchmarkRolloutHistory rolls out one commit to a simulated fleet of 100, 1,000 and 10,000
// sites on a real Temporal dev server, each wave baking for at least 120 health rounds (a 1h
// bake at 30s), the waves that passed watched meanwhile, and reports, for the largest workflow
// history of the rollout (its waves' and watches' included), its events and
// bytes, the largest event in any of its histories, and the peak RSS of the benchmark process
// (worker, simulated fleet and git together). Run it with
// `make bench-history`; docs/benchmarks.md has the method and the numbers.
func BenchmarkRolloutHistory(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run("sites="+strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				measureHistory(b, n)
			}
		})
	}
}

func measureHistory(b *testing.B, n int) {
	b.StopTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := startBenchFleet(ctx, b, n, benchPlan(n, historyBake, historyInterval), 100*time.Millisecond, 100*time.Millisecond, false, nil)
	commit, tc := f.commit, f.tc
	resetPeakRSS()

	b.StartTimer()
	start := time.Now()
	run, err := f.fw.Start(ctx, workflows.RolloutInput{Fleet: "bench", Commit: commit})
	if err != nil {
		b.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Minute)
	defer wcancel()
	rerr := run.Get(wctx, nil)
	b.StopTimer()
	took := time.Since(start)

	ids := []string{run.GetID()}
	for _, wave := range []string{"canary", "r1", "rest"} {
		ids = append(ids, workflows.WaveID(run.GetID(), wave))
	}
	// The watches over the waves that succeeded before the last (health.watch: rollout).
	for _, wave := range []string{"canary", "r1"} {
		ids = append(ids, workflows.WatchID(run.GetID(), wave))
	}
	var hs []workflowHistory
	for _, id := range ids {
		if h, ok := readHistory(ctx, tc, id); ok {
			hs = append(hs, h)
		}
	}
	largest := slices.MaxFunc(hs, func(a, c workflowHistory) int { return a.Bytes - c.Bytes })
	item := slices.MaxFunc(hs, func(a, c workflowHistory) int { return a.LargestItem - c.LargestItem })
	outcome := "succeeded"
	if rerr != nil {
		outcome = "FAILED: " + rerr.Error()
	}
	for _, h := range hs {
		rounds := ""
		if h.ID != run.GetID() {
			rounds = fmt.Sprintf(", %d health rounds", h.Rounds+1)
		}
		b.Logf("%d sites: %-40s %6d events %10d bytes, largest event %8d bytes (%s)%s", n, h.ID, h.Events, h.Bytes, h.LargestItem, h.LargestType, rounds)
	}
	b.Logf("%d sites: rollout %s in %s; peak RSS %d MiB", n, outcome, took.Round(100*time.Millisecond), peakRSS()>>20)
	b.ReportMetric(float64(largest.Events), "events/largest-history")
	b.ReportMetric(float64(largest.Bytes)/(1<<20), "MB/largest-history")
	b.ReportMetric(float64(item.LargestItem)/(1<<10), "KB/largest-event")
	b.ReportMetric(float64(peakRSS())/(1<<20), "MiB-peak-RSS")
	ok := 1.0
	if rerr != nil {
		ok = 0
	}
	b.ReportMetric(ok, "succeeded")
	runtime.GC()
}

// benchFleet is what the rollout benchmarks run on: a real Temporal dev server (in memory), a
// bare fleet repository of n site branches on disk (file://), the simulated fleet (reconcile
// delay 0) and a worker; all but the Temporal server run in the benchmark's process.
type benchFleet struct {
	tc     client.Client
	fw     *workflows.Client
	bare   string
	url    string // the fleet repo's URL: file:// or http://
	commit string // the commit to roll out, on main
}

// startBenchFleet starts a benchFleet for plan, with sites s00000..s<n-1> tracked by a
// simulated fleet that fetches the repository every simPoll, and a worker that observes
// converging sites every convergePoll (serve --driver sim: 300ms and 2s). The fleet repo is
// read and written as file://, or over smart HTTP (git http-backend on 127.0.0.1) when
// overHTTP. The Temporal dev server runs with serverConfig (dynamic config). Everything stops
// when ctx ends.
func startBenchFleet(ctx context.Context, b *testing.B, n int, plan string, simPoll, convergePoll time.Duration, overHTTP bool,
	serverConfig []string) *benchFleet {
	b.Helper()
	tp := testenv.StartTemporalWith(b, devtemporal.Options{SearchAttributes: workflows.SearchAttributes, DynamicConfig: serverConfig})
	srv, err := gitserver.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	bare, err := srv.Init("fleet")
	if err != nil {
		b.Fatal(err)
	}
	var branches []string
	for i := range n {
		branches = append(branches, fmt.Sprintf("sites/s%05d", i))
	}
	if _, err := gitserver.Seed(bare, map[string]string{"fleetwave.yaml": plan, "apps/app.yaml": "version: 1\n",
		".fleetwave/sim.yaml": "reconcileDelay: 0s\n"}, branches...); err != nil {
		b.Fatal(err)
	}
	commit, err := gitserver.Commit(bare, "app v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	if err != nil {
		b.Fatal(err)
	}
	url := "file://" + filepath.ToSlash(bare)
	if overHTTP {
		base, stop, err := gitserver.Listen("127.0.0.1:0", srv)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(stop)
		url = base + "/fleet.git"
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	writer, err := gitops.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	follower, err := gitops.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	fleet := sim.New(follower, "sites/{site}", sim.WithPoll(simPoll))
	for i := range n {
		fleet.Track(fmt.Sprintf("s%05d", i))
	}
	go func() { _ = fleet.Run(ctx) }()

	tc, err := client.Dial(client.Options{HostPort: tp.Address, Logger: tlog.NewStructuredLogger(logger), DataConverter: workflows.DataConverter(), FailureConverter: workflows.FailureConverter()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tc.Close)
	w := worker.New(tc, workflows.TaskQueue("bench"), worker.Options{})
	if err := workflows.Register(w, workflows.Activities{
		Git:        &activities.Git{Repo: writer},
		Sites:      &activities.Sites{Driver: fleet, Poll: convergePoll, Ancestry: writer},
		Executions: &activities.Executions{Client: tc},
	}); err != nil {
		b.Fatal(err)
	}
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Stop)
	return &benchFleet{tc: tc, fw: workflows.NewClient(tc, ""), bare: bare, url: url, commit: commit}
}

// readHistory reads a whole workflow history; ok is false when the workflow does not exist.
func readHistory(ctx context.Context, tc client.Client, id string) (workflowHistory, bool) {
	h := workflowHistory{ID: id}
	it := tc.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return h, h.Events > 0
		}
		size := proto.Size(e)
		h.Events++
		h.Bytes += size
		if e.GetEventType() == enumspb.EVENT_TYPE_TIMER_STARTED {
			h.Rounds++
		}
		if size > h.LargestItem {
			h.LargestItem, h.LargestType = size, e.GetEventType().String()
		}
	}
	return h, h.Events > 0
}

// resetPeakRSS resets the process's peak resident set size (VmHWM), so each size is measured
// on its own.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns the process's peak resident set size in bytes, from /proc/self/status.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
