//go:build e2e

package test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/chatops"
	"github.com/fleetwave/fleetwave/deploy/sim"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/internal/metrics"
	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// catchUpPlan defers an offline site after 2s and probes it every second once its rollout
// ended.
const catchUpPlan = `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: edge}
spec:
  sites: [{name: a}, {name: b}, {name: c}]
  waves:
    - {name: all, sites: [a, b, c], bake: 1s}
  health:
    interval: 500ms
    convergenceTimeout: 30s
    unknownTimeout: 10s
    offline: {after: 2s, action: defer, maxDeferred: 1, probe: 1s}
`

// TestNewerRolloutSupersedesCatchUp: c never answers. The first rollout defers it and
// succeeds, and its catch-up probes c. A second rollout of the fleet supersedes that catch-up
// at its first gate and promotes nothing until the catch-up ended (one writer per site
// branch); it defers c again, and the catch-up that follows is the second rollout's, with its
// commit. A third rollout supersedes that one and is aborted: it starts the catch-up again,
// with the second rollout's commit, the fleet's last succeeded one. Nothing was ever pushed to
// sites/c.
func TestNewerRolloutSupersedesCatchUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newCatchUpLab(t, catchUpPlan, 0, nil)
	gs, tc, fw := l.gs, l.tc, l.fw
	seedC := git(t, gs.Dir, "rev-parse", "sites/c")
	roll := func(version string) rollout.Status {
		t.Helper()
		commit := gs.CommitOn(t, "main", "app "+version, map[string]string{"apps/app.yaml": "version: " + version + "\n"})
		run, err := fw.Start(ctx, workflows.RolloutInput{Fleet: "edge", Commit: commit})
		if err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, nil); err != nil {
			t.Fatalf("rollout of %s: %v", version, err)
		}
		st, err := fw.Status(ctx, run.GetID())
		if err != nil || st.State != rollout.StateSucceeded || st.Reason != "1 site deferred (offline): c" {
			t.Fatalf("rollout of %s: %v, %s %q; want Succeeded with c deferred", version, err, st.State, st.Reason)
		}
		return st
	}
	id := workflows.CatchUpID("edge", "c")
	probing := func(commit string) string {
		t.Helper()
		var st rollout.Status
		eventually(t, "the catch-up of c to probe it, for "+rollout.Short(commit), 30*time.Second, func() (bool, string) {
			var err error
			st, err = fw.Status(ctx, id)
			return err == nil && st.Commit == commit && st.State == rollout.StateWaiting && strings.Contains(st.Reason, "probing every 1s"),
				st.Commit + " " + string(st.State) + " " + st.Reason
		})
		d, err := tc.DescribeWorkflow(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		return d.RawResponse.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	}

	first := roll("2")
	firstRun := probing(first.Commit)
	// serve's /metrics: one site behind, offline since the rollout last saw it.
	ms := metrics.New(nil, "edge")
	ms.WatchRollouts(fw, "edge")
	families, err := ms.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if n := f.GetName(); n == "fleetwave_sites_behind" || n == "fleetwave_site_offline_seconds" {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				got[n+"{"+strings.Join(labels, ",")+"}"] = fmt.Sprint(m.GetGauge().GetValue())
			}
		}
	}
	offline, _ := strconv.ParseFloat(got["fleetwave_site_offline_seconds{fleet=edge,site=c}"], 64)
	if got["fleetwave_sites_behind{fleet=edge}"] != "1" || offline < 2 || len(got) != 2 {
		t.Errorf("catch-up metrics %v; want 1 site behind and c offline for 2s (offline.after) or more", got)
	}
	second := roll("3")
	probing(second.Commit)
	saveHistory(t, tc, first.Rollout, "rollout-deferred-catchup")
	saveHistoryRun(t, tc, id, firstRun, "catchup-superseded")

	var res workflows.RolloutResult
	if err := tc.GetWorkflow(ctx, id, firstRun).Get(ctx, &res); err != nil {
		t.Fatalf("the first catch-up: %v", err)
	}
	if st := res.Status; st.State != rollout.StateSuperseded || !strings.Contains(st.Reason, "superseded by "+rollout.Short(second.Commit)) {
		t.Errorf("the first catch-up ended %s (%q); want Superseded by %s", st.State, st.Reason, rollout.Short(second.Commit))
	}
	d, err := tc.DescribeWorkflow(ctx, id, firstRun)
	if err != nil {
		t.Fatal(err)
	}
	closed := d.RawResponse.GetWorkflowExecutionInfo().GetCloseTime()
	if promoted := second.Waves[0].StartedAt; closed == nil || !closed.AsTime().Before(promoted) {
		t.Errorf("the second rollout's wave started at %s, before the first catch-up closed (%v): two writers", promoted, closed)
	}
	// The rollouts' reports list their catch-ups as they stand: the first superseded, the
	// second's probing.
	for _, tc := range []struct {
		st    rollout.Status
		state rollout.State
	}{{first, rollout.StateSuperseded}, {second, rollout.StateWaiting}} {
		rep, err := fw.Report(ctx, "", tc.st.Rollout, report.Links{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.CatchUps) != 1 || rep.CatchUps[0].Site != "c" || rep.CatchUps[0].Workflow != id || rep.CatchUps[0].State != tc.state {
			t.Errorf("report of %s: catch-ups %+v; want c's, %s", tc.st.Rollout, rep.CatchUps, tc.state)
		}
		if md := report.Markdown(rep); !strings.Contains(md, "## Catch-ups") || !strings.Contains(md, "`"+id+"`") {
			t.Errorf("the Markdown report of %s does not list the catch-up:\n%s", tc.st.Rollout, md)
		}
	}
	// A third rollout supersedes the second's catch-up too, and is aborted while it bakes: it
	// did not succeed, so it starts that catch-up again, with the fleet's last succeeded commit.
	third := gs.CommitOn(t, "main", "app 4, baking long", map[string]string{"apps/app.yaml": "version: 4\n",
		"fleetwave.yaml": strings.Replace(catchUpPlan, "bake: 1s", "bake: 5m", 1)})
	run, err := fw.Start(ctx, workflows.RolloutInput{Fleet: "edge", Commit: third})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the third rollout to bake", 30*time.Second, func() (bool, string) {
		st, err := fw.Status(ctx, run.GetID())
		return err == nil && st.State == rollout.StateBaking, string(st.State) + " " + st.Reason
	})
	if _, err := fw.Control(ctx, run.GetID(), string(runbook.ControlAbort), workflows.ControlInput{By: "test", Reason: "enough"}); err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err == nil {
		t.Fatal("the aborted rollout succeeded")
	}
	probing(second.Commit)
	saveHistory(t, tc, run.GetID(), "rollout-restarts-catchup")
	if head := git(t, gs.Dir, "rev-parse", "sites/c"); head != seedC {
		t.Errorf("sites/c moved to %s; nothing may be pushed to a site that never answered", head)
	}
}

// catchUpLab is a fleet of three simulated sites (a, b, c) on a git server over HTTP, with a
// Temporal dev server and a worker in this process; c is unreachable for the first
// offlineFor (0: for ever).
type catchUpLab struct {
	gs *gittest.Server
	tc client.Client
	fw *workflows.Client
}

func newCatchUpLab(t *testing.T, plan string, offlineFor time.Duration, slack *activities.Slack) *catchUpLab {
	t.Helper()
	ctx := t.Context()
	tp := testenv.StartTemporal(t, workflows.SearchAttributes...)
	gs := gittest.NewServer(t, "fleet", map[string]string{"fleetwave.yaml": plan, "apps/app.yaml": "version: 1\n"}, "sites/a", "sites/b", "sites/c")
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	writer, err := gitops.Open(ctx, gs.URL, gitops.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	follower, err := gitops.Open(ctx, gs.URL)
	if err != nil {
		t.Fatal(err)
	}
	fleet := sim.New(follower, "sites/{site}", sim.WithPoll(100*time.Millisecond), sim.WithLogger(logger),
		sim.WithScript(sim.Script{Faults: []rollout.Fault{{Unreachable: &rollout.UnreachableFault{Sites: []string{"c"}, For: offlineFor}}}}))
	fleet.Track("a", "b", "c")
	fleet.StartScript(time.Now())
	go fleet.Run(ctx)
	tc, err := client.Dial(client.Options{HostPort: tp.Address, Logger: tlog.NewStructuredLogger(logger),
		DataConverter: workflows.DataConverter(), FailureConverter: workflows.FailureConverter()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	w := worker.New(tc, workflows.TaskQueue("edge"), worker.Options{})
	if err := workflows.Register(w, workflows.Activities{
		Git:        &activities.Git{Repo: writer},
		Sites:      &activities.Sites{Driver: fleet, Poll: 100 * time.Millisecond},
		Executions: &activities.Executions{Client: tc},
		Slack:      slack,
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return &catchUpLab{gs: gs, tc: tc, fw: workflows.NewClient(tc, "")}
}

// TestCatchUpPostsInRolloutThread: the rollout defers c, offline for its first 8 seconds, and
// succeeds; c's catch-up promotes it once it answers, and posts in the rollout's Slack thread
// (slacktest): its wave and its end, "Catch-up of c", as replies to the rollout's header, and
// no thread of its own.
func TestCatchUpPostsInRolloutThread(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	slk := newE2ESlack(t)
	plan := catchUpPlan + "  notify: {slack: {channel: \"#edge\"}}\n"
	l := newCatchUpLab(t, plan, 8*time.Second,
		&activities.Slack{Notifier: &chatops.Notifier{API: chatops.NewAPI("xoxb-test", slk.api.GetAPIURL())}})
	commit := l.gs.CommitOn(t, "main", "app 2", map[string]string{"apps/app.yaml": "version: 2\n"})
	run, err := l.fw.Start(ctx, workflows.RolloutInput{Fleet: "edge", Commit: commit})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	id := workflows.CatchUpID("edge", "c")
	var st rollout.Status
	eventually(t, "the catch-up of c to succeed", time.Minute, func() (bool, string) {
		st, err = l.fw.Status(ctx, id)
		return err == nil && st.State == rollout.StateSucceeded, string(st.State) + " " + st.Reason
	})
	if v := st.CatchUpVerdict(); v != rollout.VerdictHealthy {
		t.Fatalf("catch-up of c: %s", v)
	}
	headers := slk.find(func(v url.Values) bool { return v.Get("method") == "chat.postMessage" && v.Get("thread_ts") == "" })
	if len(headers) != 1 {
		t.Fatalf("%d thread headers, want the rollout's alone", len(headers))
	}
	thread := headers[0].Get("returned_ts")
	var caughtUp []string
	eventually(t, "the catch-up's end in the rollout's thread", 30*time.Second, func() (bool, string) {
		caughtUp = nil
		for _, v := range slk.find(func(v url.Values) bool { return v.Get("thread_ts") == thread }) {
			if text := v.Get("text"); strings.HasPrefix(text, "Catch-up of c:") || strings.Contains(text, "Catch-up of c to") {
				caughtUp = append(caughtUp, text)
			}
		}
		last := ""
		if len(caughtUp) > 0 {
			last = caughtUp[len(caughtUp)-1]
		}
		return strings.Contains(last, "Catch-up of c to "+rollout.Short(commit)+" succeeded: Healthy"), strings.Join(caughtUp, " | ")
	})
	if !strings.HasPrefix(caughtUp[0], "Catch-up of c: ") || !strings.Contains(caughtUp[0], "Wave all started") {
		t.Errorf("the catch-up's first post %q; want its wave's start, named as the catch-up's", caughtUp[0])
	}
}
