//go:build e2e

package test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy/sim"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

var record = flag.Bool("record", false, "write the histories of this run to workflows/testdata/histories for the replay tests")

const plan = `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: demo}
spec:
  sites:
    - {name: ams-1, labels: {region: eu, tier: canary}}
    - {name: ams-2, labels: {region: eu}}
    - {name: fra-1, labels: {region: eu}}
    - {name: nyc-1, labels: {region: us}}
    - {name: nyc-2, labels: {region: us}}
    - {name: sfo-1, labels: {region: us}}
  waves:
    - {name: canary, selector: {tier: canary}, bake: 2s}
    - {name: eu, selector: {region: eu}, maxParallel: 1, bake: 2s}
    - {name: fleet, bake: 1s}
  health: {interval: 500ms, failureThreshold: 2, convergenceTimeout: 30s, unknownTimeout: 10s}
  rollback: {scope: wave}
`

var sites = []string{"ams-1", "ams-2", "fra-1", "nyc-1", "nyc-2", "sfo-1"}

// lab is one fleet: a git server with the fleet repo, a simulated fleet following it, a
// Temporal dev server and a worker.
type lab struct {
	t  *testing.T
	gs *gittest.Server // the fleet repo
	tc client.Client
	fw *workflows.Client
}

// git runs the git CLI in dir with gittest's environment and returns its trimmed output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return gittest.Git(t, dir, args...)
}

func newLab(t *testing.T) *lab {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	l := &lab{t: t}
	tp := testenv.StartTemporal(t, workflows.SearchAttributes...)

	var branches []string
	for _, s := range sites {
		branches = append(branches, "sites/"+s)
	}
	l.gs = gittest.NewServer(t, "fleet", map[string]string{"fleetwave.yaml": plan, "apps/app.yaml": "version: 1\n"}, branches...)

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	writer, err := gitops.Open(ctx, l.gs.URL, gitops.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	follower, err := gitops.Open(ctx, l.gs.URL)
	if err != nil {
		t.Fatal(err)
	}
	fleet := sim.New(follower, "sites/{site}", sim.WithPoll(100*time.Millisecond), sim.WithLogger(logger))
	fleet.Track(sites...)
	go fleet.Run(ctx)

	l.tc, err = client.Dial(client.Options{HostPort: tp.Address, Logger: tlog.NewStructuredLogger(logger), DataConverter: workflows.DataConverter(), FailureConverter: workflows.FailureConverter()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.tc.Close)
	// As in serve without Slack: CLI votes count, Slack votes are refused.
	w := worker.New(l.tc, workflows.TaskQueue("demo"), worker.Options{Interceptors: []interceptor.WorkerInterceptor{workflows.VoteOrigins(nil)}})
	if err := workflows.Register(w, workflows.Activities{
		Git:        &activities.Git{Repo: writer},
		Sites:      &activities.Sites{Driver: fleet, Poll: 100 * time.Millisecond},
		Executions: &activities.Executions{Client: l.tc},
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	l.fw = workflows.NewClient(l.tc, "")
	return l
}

// commit pushes a commit to main with the git CLI and returns its hash.
func (l *lab) commit(msg string, files map[string]string) string {
	return l.gs.CommitOn(l.t, "main", msg, files)
}

func (l *lab) heads() map[string]string {
	out := map[string]string{}
	for _, s := range sites {
		out[s] = git(l.t, l.gs.Dir, "rev-parse", "sites/"+s)
	}
	return out
}

func (l *lab) run(commit string) (client.WorkflowRun, rollout.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := l.fw.Start(ctx, workflows.RolloutInput{Fleet: "demo", Commit: commit})
	if err != nil {
		l.t.Fatal(err)
	}
	var res workflows.RolloutResult
	werr := run.Get(ctx, &res)
	st, err := l.fw.Status(ctx, run.GetID())
	if err != nil {
		l.t.Fatalf("status: %v", err)
	}
	return run, st, werr
}

func (l *lab) saveHistory(workflowID, name string) { saveHistory(l.t, l.tc, workflowID, name) }

// historyTag names the workflow code that -record records histories of: a recorded history is
// kept for good (docs/workflows.md, the versioning rule), so new recordings go beside the old
// ones under a new tag, never over them. Change it when workflow code changes.
const historyTag = "catchup"

// saveHistory writes a workflow's history (and its ID, since child IDs derive from it) to
// workflows/testdata/histories/<name>.<historyTag>.json when the tests run with -record. It
// never overwrites a recorded history.
func saveHistory(t *testing.T, tc client.Client, workflowID, name string) {
	saveHistoryRun(t, tc, workflowID, "", name)
}

// saveHistoryRun is saveHistory for one run of the workflow ("" for the latest).
func saveHistoryRun(t *testing.T, tc client.Client, workflowID, runID, name string) {
	if !*record {
		return
	}
	name += "." + historyTag
	dir := filepath.Join("..", "workflows", "testdata", "histories")
	if _, err := os.Stat(filepath.Join(dir, name+".json")); err == nil {
		t.Logf("history %s is recorded already; kept as it is", name)
		return
	}
	ctx := context.Background()
	it := tc.GetWorkflowHistory(ctx, workflowID, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	data, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".id"), []byte(workflowID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRolloutEndToEnd(t *testing.T) {
	l := newLab(t)
	seeded := l.heads()

	// A good commit reaches every site through promotion commits.
	good := l.commit("bump app to v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	run, st, err := l.run(good)
	if err != nil {
		t.Fatalf("rollout of a good commit failed: %v", err)
	}
	if st.State != rollout.StateSucceeded {
		t.Fatalf("state %s", st.State)
	}
	goodTree := git(t, l.gs.Dir, "rev-parse", good+"^{tree}")
	promoted := l.heads()
	for _, s := range sites {
		head := promoted[s]
		if tree := git(t, l.gs.Dir, "rev-parse", head+"^{tree}"); tree != goodTree {
			t.Errorf("site %s: promotion tree %s, want the source tree %s", s, tree, goodTree)
		}
		if parent := git(t, l.gs.Dir, "rev-parse", head+"^"); parent != seeded[s] {
			t.Errorf("site %s: promotion parent %s, want the previous head %s", s, parent, seeded[s])
		}
		trailers := git(t, l.gs.Dir, "log", "-1", "--format=%(trailers:only,unfold)", head)
		for _, want := range []string{"Fleetwave-Rollout: " + run.GetID(), "Fleetwave-Source: " + good, "Fleetwave-Wave: "} {
			if !strings.Contains(trailers, want) {
				t.Errorf("site %s: trailers %q lack %q", s, trailers, want)
			}
		}
	}
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			if s.Verdict != rollout.VerdictHealthy {
				t.Errorf("site %s verdict %s: %s", s.Name, s.Verdict, s.Message)
			}
		}
	}
	l.saveHistory(run.GetID(), "rollout-succeeded")
	l.saveHistory(workflows.WaveID(run.GetID(), "eu"), "wave-succeeded")
	l.saveHistory(workflows.WatchID(run.GetID(), "canary"), "watch-succeeded")

	// The same commit again is a no-op: same workflow, nothing written.
	again, _, err := l.run(good)
	if err != nil || again.GetRunID() != run.GetRunID() {
		t.Errorf("second start of %s: run %s (err %v), want the existing run %s", rollout.Short(good), again.GetRunID(), err, run.GetRunID())
	}
	if diff := fmt.Sprint(l.heads()); diff != fmt.Sprint(promoted) {
		t.Errorf("a repeated start wrote to site branches: %v, want %v", l.heads(), promoted)
	}

	// The rollout is findable by the search attributes the Temporal UI filters on.
	waitFor(t, "rollout listed by FleetwaveCommit", func() bool {
		resp, err := l.tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf(`FleetwaveFleet = "demo" AND FleetwaveCommit = %q AND FleetwaveState = "Succeeded" AND WorkflowType = "Rollout"`, good)})
		return err == nil && len(resp.Executions) == 1 && resp.Executions[0].Execution.WorkflowId == run.GetID()
	})

	// A commit that degrades the canary: the canary is reverted, later waves are untouched.
	bad := l.commit("bump app to v3", map[string]string{"apps/app.yaml": "version: 3\n", sim.ConfigFile: "reconcileDelay: 200ms\ndegraded: [ams-1]\n"})
	run, st, err = l.run(bad)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != workflows.ErrTypeRolloutFailed {
		t.Fatalf("rollout of a degrading commit: err %v, want %s", err, workflows.ErrTypeRolloutFailed)
	}
	for _, want := range []string{"site ams-1 degraded in wave canary", "check sim failed", "value 1, want == 0", "2 times in a row"} {
		if !strings.Contains(app.Message(), want) {
			t.Errorf("failure %q lacks %q", app.Message(), want)
		}
	}
	after := l.heads()
	for _, s := range sites[1:] {
		if after[s] != promoted[s] {
			t.Errorf("site %s of a later wave was touched: %s -> %s", s, promoted[s], after[s])
		}
	}
	revert := after["ams-1"]
	promotion := git(t, l.gs.Dir, "rev-parse", revert+"^")
	if got := git(t, l.gs.Dir, "log", "-1", "--format=%(trailers:key=Fleetwave-Source,valueonly)", promotion); got != bad {
		t.Errorf("revert parent %s is not the promotion of %s (source %q)", promotion, bad, got)
	}
	body := git(t, l.gs.Dir, "log", "-1", "--format=%B", revert)
	if !strings.HasPrefix(body, `Revert "`) || !strings.Contains(body, "This reverts commit "+promotion+".") ||
		!strings.Contains(body, "Fleetwave-Reason: site ams-1 degraded in wave canary") {
		t.Errorf("revert message:\n%s", body)
	}
	// The revert is what `git revert` of the promotion produces, and restores the good tree.
	work := filepath.Join(t.TempDir(), "w")
	git(t, "", "clone", "-q", l.gs.URL, work)
	git(t, work, "checkout", "-q", "-b", "check", "origin/sites/ams-1~1")
	git(t, work, "revert", "--no-edit", "HEAD")
	if cli, ours := git(t, work, "rev-parse", "HEAD^{tree}"), git(t, l.gs.Dir, "rev-parse", revert+"^{tree}"); cli != ours || ours != goodTree {
		t.Errorf("revert tree %s, git revert gives %s, good tree %s", ours, cli, goodTree)
	}
	canary := st.Waves[0].Sites[0]
	if st.State != rollout.StateFailed || canary.Verdict != rollout.VerdictReverted || canary.Revert != revert {
		t.Errorf("status %s, canary %+v", st.State, canary)
	}
	if !strings.HasSuffix(canary.Revision, revert) {
		t.Errorf("canary applied %q, want the revert %s", canary.Revision, revert)
	}
	l.saveHistory(run.GetID(), "rollout-reverted")
	l.saveHistory(workflows.WaveID(run.GetID(), "canary"), "wave-degraded")

	// An invalid plan fails with its position before any site branch is written.
	broken := l.commit("typo in plan", map[string]string{"fleetwave.yaml": strings.Replace(plan, "bake: 2s", "bake: 2 seconds", 1), sim.ConfigFile: ""})
	before := l.heads()
	_, st, err = l.run(broken)
	if err == nil || !strings.Contains(err.Error(), `fleetwave.yaml:13:54: invalid duration "2 seconds"`) {
		t.Errorf("invalid plan: err %v", err)
	}
	if fmt.Sprint(l.heads()) != fmt.Sprint(before) || st.State != rollout.StateFailed {
		t.Errorf("invalid plan wrote to site branches or did not fail (%s)", st.State)
	}
}

func TestRolloutWaitsForUnreachableGitServer(t *testing.T) {
	l := newLab(t)
	good := l.commit("bump app to v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	l.gs.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := l.fw.Start(ctx, workflows.RolloutInput{Fleet: "demo", Commit: good})
	if err != nil {
		t.Fatal(err)
	}
	// While the server is down, the status says what the rollout waits for, and why.
	var waiting string
	waitFor(t, "status naming the failing git activity", func() bool {
		st, err := l.fw.Status(ctx, run.GetID())
		if err != nil || len(st.Waiting) == 0 {
			return false
		}
		waiting = strings.Join(st.Waiting, "; ")
		return strings.Contains(waiting, "LoadPlan (attempt 2)")
	})
	if !strings.Contains(waiting, "connection refused") {
		t.Errorf("waiting = %q, want the git error", waiting)
	}
	// When the server is back, the retried activity goes through and the rollout finishes.
	l.gs.Restart(t)
	var res workflows.RolloutResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("rollout after the git server came back: %v", err)
	}
	if res.Status.State != rollout.StateSucceeded {
		t.Errorf("state %s", res.Status.State)
	}
}
