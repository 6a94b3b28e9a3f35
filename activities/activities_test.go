package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/deploy/sim"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
)

const plan = `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: demo}
spec:
  sites:
    - {name: ams-1, labels: {tier: canary}}
    - {name: ams-2}
  waves:
    - {name: canary, selector: {tier: canary}, bake: 2s}
    - {name: rest}
`

// badPlan has one problem: wave canary names a site the plan does not list (line 8, column 30).
const badPlan = `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: demo}
spec:
  sites:
    - {name: ams-1}
  waves:
    - {name: canary, sites: [nyc-9]}
    - {name: rest}
`

// fleet is a fleet repo behind a real git http-backend server on 127.0.0.1, seeded with the
// plan on main and on the site branches of ams-1 and ams-2.
type fleet struct {
	*gittest.Server
	t   *testing.T
	ctx context.Context
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s := gittest.NewServer(t, "fleet", map[string]string{rollout.PlanFile: plan, "apps/app.yaml": "version: 1\n"}, "sites/ams-1", "sites/ams-2")
	return &fleet{Server: s, t: t, ctx: ctx}
}

// open returns a gitops.Repo on the fleet repo.
func (f *fleet) open() *gitops.Repo {
	f.t.Helper()
	r, err := gitops.Open(f.ctx, f.URL)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// commitOn commits files (content "" deletes) on top of branch with the git CLI, pushes it over
// HTTP and returns the new sha.
func (f *fleet) commitOn(branch, msg string, files map[string]string) string {
	f.t.Helper()
	return f.CommitOn(f.t, branch, msg, files)
}

// head returns the sha of branch in the served repo; the branch must exist.
func (f *fleet) head(branch string) string {
	f.t.Helper()
	h := f.Head(f.t, branch)
	if h == "" {
		f.t.Fatalf("no branch %s in the fleet repo", branch)
	}
	return h
}

func (f *fleet) tree(rev string) string {
	f.t.Helper()
	return gittest.Git(f.t, f.Dir, "rev-parse", rev+"^{tree}")
}

func targets(sites ...string) []gitops.Target {
	var ts []gitops.Target
	for _, s := range sites {
		ts = append(ts, gitops.Target{Site: s, Branch: "sites/" + s})
	}
	return ts
}

// appErr asserts that err is a non-retryable application error of the given type and returns
// its message.
func appErr(t *testing.T, err error, typ string) string {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an application error", err, err)
	}
	if ae.Type() != typ || !ae.NonRetryable() {
		t.Fatalf("application error type %q non-retryable %v, want non-retryable %q: %v", ae.Type(), ae.NonRetryable(), typ, ae)
	}
	return ae.Error()
}

// newEnv returns an activity environment whose logs (activity errors included) are dropped.
func newEnv() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	return s.NewTestActivityEnvironment()
}

func gitEnvFor(t *testing.T, repo Repo) *testsuite.TestActivityEnvironment {
	t.Helper()
	env := newEnv()
	env.RegisterActivity(&Git{Repo: repo})
	return env
}

// TestLoadPlan loads the plan at a commit pushed after the repo was opened (LoadPlan fetches),
// by full sha and by branch name, and maps bad plans and unknown commits to non-retryable
// application errors.
func TestLoadPlan(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	env := gitEnvFor(t, f.open())
	c := f.commitOn("main", "Bump app to 2\n\nbody", map[string]string{"apps/app.yaml": "version: 2\n"})
	wantPlan, err := rollout.ParsePlan(rollout.PlanFile, []byte(plan))
	if err != nil {
		t.Fatal(err)
	}
	wantPlan.Warnings = nil // for plan validate; the recorded plan leaves them out

	for _, ref := range []string{c, "main"} {
		val, err := env.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: ref})
		if err != nil {
			t.Fatalf("LoadPlan(%s): %v", ref, err)
		}
		var got LoadPlanResult
		if err := val.Get(&got); err != nil {
			t.Fatal(err)
		}
		// The plan's blob hash is git's (for the report).
		want := LoadPlanResult{Plan: wantPlan, Commit: c, Subject: "Bump app to 2", Author: "Test Author <author@example.com>", Message: "Bump app to 2\n\nbody\n",
			PlanBlob: gittest.Git(t, f.Dir, "rev-parse", c+":"+rollout.PlanFile)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("LoadPlan(%s) (-want +got):\n%s", ref, diff)
		}
	}

	// A worker observing a simulated fleet says so with the plan, for the rollout's status.
	simEnv := newEnv()
	simEnv.RegisterActivity(&Git{Repo: f.open(), Sites: simFleet(t, f)})
	val, err := simEnv.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: c})
	var simulated LoadPlanResult
	if err != nil || val.Get(&simulated) != nil || !simulated.Simulated {
		t.Errorf("LoadPlan on a worker with a simulated fleet: %+v, %v; want Simulated", simulated, err)
	}

	bad := f.commitOn("main", "Break the plan", map[string]string{rollout.PlanFile: badPlan})
	_, err = env.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: bad})
	if msg := appErr(t, err, ErrTypeInvalidPlan); !strings.HasPrefix(msg, `fleetwave.yaml:8:30: wave "canary" names unknown site "nyc-9"`) {
		t.Errorf("invalid plan message %q, want fleetwave.yaml:8:30: about nyc-9", msg)
	}

	// A site whose branch is one the worker keeps (its evidence branch) fails the load: its
	// promotion would be written there.
	reserved := newEnv()
	reserved.RegisterActivity(&Git{Repo: f.open(), Reserved: []string{"main", "sites/ams-2"}})
	_, err = reserved.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: c})
	if msg := appErr(t, err, ErrTypeInvalidPlan); !strings.Contains(msg, `site ams-2: its branch "sites/ams-2" is a branch fleetwave keeps`) {
		t.Errorf("a site on a reserved branch: %q", msg)
	}

	// Rego policies at the commit come with the plan; one that does not compile fails the load.
	withPolicy := f.commitOn("main", "Add policies", map[string]string{
		rollout.PlanFile:                       plan,
		".fleetwave/policies/freeze.rego":      "package fleetwave.policy\n\ndeny contains \"frozen\" if input.wave.name == \"x\"\n",
		".fleetwave/policies/README.md":        "not a policy\n",
		".fleetwave/policies/freeze_test.rego": "package fleetwave.policy_test\n\ntest_ok if true\n",
	})
	val, err = env.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: withPolicy})
	if err != nil {
		t.Fatal(err)
	}
	var loaded LoadPlanResult
	if err := val.Get(&loaded); err != nil {
		t.Fatal(err)
	}
	if len(loaded.Policies) != 2 || loaded.Policies[0].Path != ".fleetwave/policies/freeze.rego" || loaded.Policies[1].Path != ".fleetwave/policies/freeze_test.rego" {
		t.Errorf("policies = %+v", loaded.Policies)
	}
	broken := f.commitOn("main", "Break a policy", map[string]string{".fleetwave/policies/freeze.rego": "package fleetwave.policy\n\ndeny contains msg if {\n  msg := nope(1)\n}\n"})
	_, err = env.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: broken})
	if msg := appErr(t, err, ErrTypeInvalidPolicy); !strings.HasPrefix(msg, ".fleetwave/policies/freeze.rego:4:") {
		t.Errorf("invalid policy message %q, want .fleetwave/policies/freeze.rego:4:...", msg)
	}

	gone := f.commitOn("main", "Drop the plan", map[string]string{rollout.PlanFile: ""})
	_, err = env.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: gone})
	if msg := appErr(t, err, ErrTypeInvalidPlan); !strings.Contains(msg, "fleetwave.yaml: not found at commit "+rollout.Short(gone)) {
		t.Errorf("missing plan message %q", msg)
	}

	unknown := strings.Repeat("ab", 20)
	_, err = env.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: unknown})
	if msg := appErr(t, err, ErrTypeCommitNotFound); !strings.Contains(msg, unknown) {
		t.Errorf("unknown commit message %q does not name %s", msg, unknown)
	}
}

// TestPromoteRevert promotes a commit to two site branches and reverts it through the
// activities on a real repo: the site trees follow, and repeating either writes nothing.
func TestPromoteRevert(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	env := gitEnvFor(t, f.open())
	src := f.commitOn("main", "Bump app to 2", map[string]string{"apps/app.yaml": "version: 2\n"})

	promote := func() []gitops.Change {
		t.Helper()
		val, err := env.ExecuteActivity((&Git{}).Promote, PromoteInput{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1", "ams-2")})
		if err != nil {
			t.Fatalf("Promote: %v", err)
		}
		var res ChangeResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res.Changes
	}
	revert := func() []gitops.Change {
		t.Helper()
		val, err := env.ExecuteActivity((&Git{}).Revert, RevertInput{Rollout: "r1", Reason: "ams-1 degraded", Targets: targets("ams-1", "ams-2")})
		if err != nil {
			t.Fatalf("Revert: %v", err)
		}
		var res ChangeResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res.Changes
	}

	promoted := promote()
	for i, s := range []string{"ams-1", "ams-2"} {
		c := promoted[i]
		if c.Site != s || c.Branch != "sites/"+s || !c.Created || c.Previous != f.Seed || c.Commit != f.head(c.Branch) {
			t.Errorf("promotion of %s: %+v", s, c)
		}
		if f.tree(c.Branch) != f.tree(src) {
			t.Errorf("%s does not carry the source tree after Promote", c.Branch)
		}
	}
	again := promote()
	for i, c := range again {
		if c.Created || c.Commit != promoted[i].Commit {
			t.Errorf("repeated Promote wrote %+v, want nothing (head %s)", c, rollout.Short(promoted[i].Commit))
		}
	}

	reverted := revert()
	for i, c := range reverted {
		if !c.Created || c.Previous != promoted[i].Commit || c.Commit != f.head(c.Branch) {
			t.Errorf("revert: %+v", c)
		}
		if f.tree(c.Branch) != f.tree(f.Seed) {
			t.Errorf("%s does not carry the seed tree after Revert", c.Branch)
		}
	}
	for i, c := range revert() {
		if c.Created || c.Commit != reverted[i].Commit {
			t.Errorf("repeated Revert wrote %+v, want nothing", c)
		}
	}
}

// TestPromoteMissingBranch: a missing site branch is a non-retryable BranchNotFound and nothing
// is pushed to the other targets.
func TestPromoteMissingBranch(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	env := gitEnvFor(t, f.open())
	src := f.commitOn("main", "Bump app to 2", map[string]string{"apps/app.yaml": "version: 2\n"})
	_, err := env.ExecuteActivity((&Git{}).Promote, PromoteInput{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1", "nyc-9")})
	if msg := appErr(t, err, ErrTypeBranchNotFound); !strings.Contains(msg, "sites/nyc-9") {
		t.Errorf("message %q does not name the branch", msg)
	}
	if got := f.head("sites/ams-1"); got != f.Seed {
		t.Errorf("sites/ams-1 moved to %s", rollout.Short(got))
	}
}

// TestPromoteRejectedByAHook: a push a pre-receive hook refuses is a non-retryable
// PushRejected carrying the server's words; Temporal does not retry what cannot succeed.
func TestPromoteRejectedByAHook(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	env := gitEnvFor(t, f.open())
	src := f.commitOn("main", "Bump app to 2", map[string]string{"apps/app.yaml": "version: 2\n"})
	hook := filepath.Join(f.Dir, "hooks", "pre-receive")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'branch sites/ams-1 is protected' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := env.ExecuteActivity((&Git{}).Promote, PromoteInput{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1")})
	if msg := appErr(t, err, ErrTypePushRejected); !strings.Contains(msg, "branch sites/ams-1 is protected") {
		t.Errorf("message %q lacks the server's words", msg)
	}
}

// simFleet returns a simulated fleet following the repo, advanced by Run every 20ms (or as
// opts say).
func simFleet(t *testing.T, f *fleet, opts ...sim.Option) *sim.Fleet {
	t.Helper()
	fl := sim.New(f.open(), "sites/{site}", append([]sim.Option{sim.WithPoll(20 * time.Millisecond)}, opts...)...)
	fl.Track("ams-1", "ams-2")
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fl.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return fl
}

func sitesEnv(t *testing.T, d *sim.Fleet) *testsuite.TestActivityEnvironment {
	t.Helper()
	env := newEnv()
	env.RegisterActivity(&Sites{Driver: d, Poll: 20 * time.Millisecond})
	return env
}

func waitConverged(t *testing.T, env *testsuite.TestActivityEnvironment, in ConvergeInput) ConvergeResult {
	t.Helper()
	val, err := env.ExecuteActivity((&Sites{}).WaitConverged, in)
	if err != nil {
		t.Fatalf("WaitConverged: %v", err)
	}
	var res ConvergeResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestWaitConverged runs the simulated fleet against the real repo: sites that apply the
// commit converge; a site that never gets it leaves Converged false at the deadline without an
// error; a site whose sim.yaml is broken at the commit makes the result Failed.
func TestWaitConverged(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	env := sitesEnv(t, simFleet(t, f))
	site := func(n string) rollout.Site { return rollout.Site{Name: n} }

	start := time.Now() // the fleet cannot see a1 before it is pushed
	a1 := f.commitOn("sites/ams-1", "ams-1 v2", map[string]string{sim.ConfigFile: "reconcileDelay: 200ms\n"})
	a2 := f.commitOn("sites/ams-2", "ams-2 v2", map[string]string{sim.ConfigFile: "reconcileDelay: 100ms\n"})
	res := waitConverged(t, env, ConvergeInput{
		Sites:    []Expectation{{Site: site("ams-1"), Commit: a1}, {Site: site("ams-2"), Commit: a2}},
		Deadline: time.Now().Add(10 * time.Second),
	})
	if diff := cmp.Diff([]bool{true, true}, res.Converged); diff != "" || res.Failed {
		t.Errorf("Converged (-want +got):\n%s\nFailed %v, states %+v", diff, res.Failed, res.States)
	}
	for i, h := range []string{a1, a2} {
		if st := res.States[i]; !st.Converged(h) {
			t.Errorf("state %d: %+v, want converged at %s", i, st, rollout.Short(h))
		}
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("converged after %s, before ams-1's reconcileDelay of 200ms", took)
	}

	// ams-2 will never run "other"; the deadline is 300ms away.
	other := f.commitOn("main", "never promoted", map[string]string{"apps/app.yaml": "version: 9\n"})
	start = time.Now()
	res = waitConverged(t, env, ConvergeInput{
		Sites:    []Expectation{{Site: site("ams-1"), Commit: a1}, {Site: site("ams-2"), Commit: other}},
		Deadline: time.Now().Add(300 * time.Millisecond),
	})
	if diff := cmp.Diff([]bool{true, false}, res.Converged); diff != "" || res.Failed {
		t.Errorf("Converged (-want +got):\n%s\nFailed %v", diff, res.Failed)
	}
	if got := res.States[1].Revision; got != "sites/ams-2@sha1:"+a2 {
		t.Errorf("ams-2 last observed at %q, want its own head", got)
	}
	// The deadline travels as wall-clock time, start is monotonic: allow for a skew of 10ms.
	if took := time.Since(start); took < 290*time.Millisecond || took > 5*time.Second {
		t.Errorf("returned after %s with a deadline 300ms away", took)
	}

	// A broken sim.yaml at the expected commit: Flux failed, so the wait ends early.
	broken := f.commitOn("sites/ams-2", "broken", map[string]string{sim.ConfigFile: "degraded: [\n"})
	res = waitConverged(t, env, ConvergeInput{
		Sites:    []Expectation{{Site: site("ams-2"), Commit: broken}},
		Deadline: time.Now().Add(10 * time.Second),
	})
	if !res.Failed || res.Converged[0] {
		t.Errorf("broken sim.yaml: Failed %v Converged %v, want failed", res.Failed, res.Converged)
	}
	if st := res.States[0]; !st.FluxFailed(broken) || !strings.Contains(st.Message, sim.ConfigFile) {
		t.Errorf("broken sim.yaml state: %+v", st)
	}
}

// TestConvergenceIsNotifiedNotPolled waits for a site on a fleet that fetches its repo and a
// wait that observes its sites once an hour: only the reconcile request (the fleet fetches at
// once) and the fleet's change notification (the wait observes at once) can make it return
// before its deadline, 20 s away, with the site converged. It holds for the fleet in another process too (sim.Remote, as a rehearsal runs it).
func TestConvergenceIsNotifiedNotPolled(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	fl := simFleet(t, f, sim.WithPoll(time.Hour), sim.WithReconcileDelay(0))
	srv := httptest.NewServer(fl.Handler())
	t.Cleanup(srv.Close)

	for _, d := range []struct {
		name   string
		driver deploy.Driver
	}{{"same process", fl}, {"remote", &sim.Remote{URL: srv.URL}}} {
		c := f.commitOn("sites/ams-1", "ams-1 "+d.name, map[string]string{"apps/app.yaml": "version: " + d.name + "\n"})
		env := newEnv()
		env.RegisterActivity(&Sites{Driver: d.driver, Poll: time.Hour})
		start := time.Now()
		res := waitConverged(t, env, ConvergeInput{
			Sites:    []Expectation{{Site: rollout.Site{Name: "ams-1"}, Commit: c}},
			Deadline: time.Now().Add(20 * time.Second),
		})
		if !res.Converged[0] || !res.States[0].Converged(c) {
			t.Errorf("%s: %+v, want ams-1 converged at %s", d.name, res.States[0], rollout.Short(c))
		}
		// Polled, it would have seen the site at the deadline at best.
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s: converged after %s: the change was polled, not notified", d.name, took)
		}
	}
}

// TestObserve returns one state per site, in the order asked, unreachable sites included.
func TestObserve(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	env := sitesEnv(t, simFleet(t, f))
	in := ObserveInput{Sites: []rollout.Site{{Name: "ams-2"}, {Name: "ghost"}, {Name: "ams-1"}}}
	val, err := env.ExecuteActivity((&Sites{}).Observe, in)
	if err != nil {
		t.Fatal(err)
	}
	var res ObserveResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.States) != 3 {
		t.Fatalf("%d states for 3 sites: %+v", len(res.States), res.States)
	}
	for i, want := range []struct {
		site      string
		reachable bool
	}{{"ams-2", true}, {"ghost", false}, {"ams-1", true}} {
		st := res.States[i]
		if st.Site != want.site || st.Reachable != want.reachable {
			t.Errorf("state %d: %+v, want site %s reachable %v", i, st, want.site, want.reachable)
		}
		if want.reachable && !st.Converged(f.Seed) {
			t.Errorf("state %d: %+v, want converged at the seed", i, st)
		}
	}
	if msg := res.States[1].Message; msg != "site branch sites/ghost does not exist" {
		t.Errorf("ghost message %q", msg)
	}
}

func TestInspect(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	env := gitEnvFor(t, f.open())
	older := f.commitOn("main", "one", map[string]string{"apps/app.yaml": "version: 2\n"})
	newer := f.commitOn("main", "two, queued", map[string]string{rollout.PlanFile: plan + "  onNewCommit: queue\n"})
	side := f.commitOn("sites/ams-1", "elsewhere", map[string]string{"apps/app.yaml": "version: 9\n"})
	run := func(in InspectInput) InspectResult {
		t.Helper()
		val, err := env.ExecuteActivity((&Git{}).Inspect, in)
		if err != nil {
			t.Fatalf("Inspect(%s): %v", in.Commit, err)
		}
		var got InspectResult
		if err := val.Get(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	inspect := func(commit string, known ...string) InspectResult {
		t.Helper()
		return run(InspectInput{Commit: commit, Known: known})
	}
	if got := inspect(older, "", newer); got.Stale != newer {
		t.Errorf("an ancestor of a known commit: %+v, want stale", got)
	}
	if got := inspect(newer, older); got != (InspectResult{OnNewCommit: rollout.OnNewCommitQueue}) {
		t.Errorf("a descendant with onNewCommit: queue: %+v", got)
	}
	if got := inspect(older, side); got != (InspectResult{OnNewCommit: rollout.OnNewCommitSupersede}) {
		t.Errorf("unrelated history, default policy: %+v", got)
	}
	// The last successful rollout: that commit and its ancestors are stale, a later one is not.
	done := func(commit, last string) InspectResult {
		t.Helper()
		return run(InspectInput{Commit: commit, Done: last})
	}
	if got := done(older, newer); got.Stale != newer {
		t.Errorf("older than the last success: %+v, want stale", got)
	}
	if got := done(newer, newer); got.Stale != newer {
		t.Errorf("the last success itself: %+v, want stale", got)
	}
	if got := done(newer, older); got.Stale != "" {
		t.Errorf("newer than the last success: %+v, want it taken", got)
	}
	_, err := env.ExecuteActivity((&Git{}).Inspect, InspectInput{Commit: strings.Repeat("e", 40)})
	appErr(t, err, ErrTypeCommitNotFound)
}

// TestHealthRound: a health round against the simulated fleet reports only what is not
// healthy at the expected commit (a missing branch, a site on another commit), and healthy
// observations only within the detail budget.
func TestHealthRound(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	env := sitesEnv(t, simFleet(t, f))
	in := HealthRoundInput{Sites: []rollout.Site{{Name: "ams-2"}, {Name: "ghost"}, {Name: "ams-1"}},
		Expect: []string{f.Seed, f.Seed, "0000000000000000000000000000000000000001"}}
	val, err := env.ExecuteActivity((&Sites{}).HealthRound, in)
	if err != nil {
		t.Fatal(err)
	}
	var res HealthRoundResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, st := range res.States {
		listed = append(listed, st.Site)
	}
	if strings.Join(listed, ",") != "ghost,ams-1" || res.Healthy != 1 {
		t.Errorf("listed %v, %d healthy; want ghost (unreachable) and ams-1 (another commit), ams-2 healthy and left out", listed, res.Healthy)
	}
	in.Detail = 1 << 10
	val, err = env.ExecuteActivity((&Sites{}).HealthRound, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.States) != 3 || res.States[0].Site != "ams-2" {
		t.Errorf("with a detail budget: %+v, want ams-2's healthy observation listed too", res.States)
	}
	if _, err := env.ExecuteActivity((&Sites{}).HealthRound, HealthRoundInput{Sites: in.Sites}); err == nil {
		t.Error("a round without expected commits succeeded")
	}
}

func TestRoundChangesDetailBudget(t *testing.T) {
	var states []rollout.SiteState
	var expect []string
	for i := range 1000 {
		name := fmt.Sprintf("s%04d", i)
		states = append(states, rollout.SiteState{Site: name, Reachable: true, Ready: true, Revision: "sites/" + name + "@sha1:abc",
			Checks: []rollout.CheckResult{{Name: "error-rate", OK: true, Value: 0.001, Threshold: "<= 0.01"}}})
		expect = append(expect, "abc")
	}
	states[500].Checks[0].OK = false
	res := RoundChanges(states, expect, nil, 4<<10)
	data, _ := json.Marshal(res)
	if res.Healthy != 999 || len(data) > 5<<10 {
		t.Errorf("%d healthy, %d bytes; want 999 and about the 4 KiB budget", res.Healthy, len(data))
	}
	if last := res.States[len(res.States)-1]; last.Site != "s0500" {
		t.Errorf("the failing site is not listed last: %+v", last)
	}
	if res.DetailBytes == 0 || res.DetailBytes > 4<<10 {
		t.Errorf("detail bytes %d, want some, within the budget", res.DetailBytes)
	}
	// A site marked to report is listed although healthy, even without a detail budget.
	report := make([]bool, len(states))
	report[900] = true
	res = RoundChanges(states, expect, report, 0)
	if len(res.States) != 2 || res.States[0].Site != "s0500" || res.States[1].Site != "s0900" || res.DetailBytes != 0 {
		t.Errorf("with s0900 to report: %d listed (%v)", len(res.States), res.States)
	}
}

// TestConvergedUnderSomeoneElsesCommit: someone pushes on top of the promotion before the site
// applies it, and Flux applies their head. With the repo's ancestry the site converged (its
// revision contains the promotion); compared exactly, it never would.
func TestConvergedUnderSomeoneElsesCommit(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	fleet := simFleet(t, f)
	promo := f.commitOn("sites/ams-1", "Promote", map[string]string{"apps/app.yaml": "version: 2\n"})
	theirs := f.commitOn("sites/ams-1", "someone else", map[string]string{"other.txt": "x\n"})
	unrelated := f.commitOn("main", "never promoted", map[string]string{"apps/app.yaml": "version: 9\n"})
	in := func(commit string) ConvergeInput {
		// Long enough for the simulated site to apply the head (its reconcile takes 1s).
		return ConvergeInput{Sites: []Expectation{{Site: rollout.Site{Name: "ams-1"}, Commit: commit}}, Deadline: time.Now().Add(3 * time.Second)}
	}

	env := newEnv()
	env.RegisterActivity(&Sites{Driver: fleet, Poll: 20 * time.Millisecond, Ancestry: f.open()})
	res := waitConverged(t, env, in(promo))
	if !res.Converged[0] || res.States[0].Contains != promo || rollout.RevisionHash(res.States[0].Revision) != theirs {
		t.Errorf("with ancestry: converged %v, state %+v; want converged at %s containing %s", res.Converged, res.States[0], rollout.Short(theirs), rollout.Short(promo))
	}
	if res := waitConverged(t, env, in(unrelated)); res.Converged[0] || res.States[0].Contains != "" {
		t.Errorf("a commit the site's head does not contain: %+v", res)
	}

	// A manual revert of the promotion descends from it, but no longer runs it.
	revert := f.CommitFunc(t, "sites/ams-1", "unused", func(dir string) {
		gittest.Git(t, dir, "revert", "--no-edit", promo)
		gittest.Git(t, dir, "reset", "--soft", "HEAD~1")
	})
	if res := waitConverged(t, env, in(revert)); !res.Converged[0] {
		t.Fatalf("the site did not apply the revert: %+v", res.States[0])
	}
	if res := waitConverged(t, env, in(promo)); res.Converged[0] || res.States[0].Contains != "" {
		t.Errorf("after a git revert of the promotion: converged %v, state %+v; want not running it", res.Converged, res.States[0])
	}

	exact := newEnv()
	exact.RegisterActivity(&Sites{Driver: fleet, Poll: 20 * time.Millisecond})
	if res := waitConverged(t, exact, in(promo)); res.Converged[0] {
		t.Errorf("without ancestry: converged %v", res.Converged)
	}
}

// TestOnlyTheSourceBranchShips: a commit not reachable from the source branch's head (pushed
// to another branch, never merged) is refused by Inspect, for the fleet's refused commits, and by
// LoadPlan, for a rollout started any other way; once merged (a fast-forward: the same
// commit), it is taken.
func TestOnlyTheSourceBranchShips(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	gittest.Git(t, f.Dir, "branch", "side", "main")
	side := f.commitOn("side", "unreviewed", map[string]string{"apps/app.yaml": "version: 666\n"})
	env := newEnv()
	env.RegisterActivity(&Git{Repo: f.open(), SourceBranch: "main"})
	inspect := func() InspectResult {
		t.Helper()
		val, err := env.ExecuteActivity((&Git{}).Inspect, InspectInput{Commit: side})
		if err != nil {
			t.Fatal(err)
		}
		var got InspectResult
		if err := val.Get(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := inspect(); !strings.Contains(got.Refused, "commit "+rollout.Short(side)+" is not on the source branch main") {
		t.Errorf("Inspect of a commit on side only: %+v, want refused", got)
	}
	_, err := env.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: side})
	if msg := appErr(t, err, ErrTypeNotOnSourceBranch); !strings.Contains(msg, "only commits merged there are rolled out") {
		t.Errorf("LoadPlan of a commit on side only: %q", msg)
	}
	gittest.Git(t, f.Dir, "update-ref", "refs/heads/main", side) // merged: a fast-forward
	if got := inspect(); got.Refused != "" {
		t.Errorf("Inspect once merged: %+v, want taken", got)
	}
	if _, err := env.ExecuteActivity((&Git{}).LoadPlan, LoadPlanInput{Commit: side}); err != nil {
		t.Errorf("LoadPlan once merged: %v", err)
	}
}

// TestDeployed: the source commit every site branch's head promotes is what the fleet runs;
// a site on another commit, or on a revert, leaves it unknown.
func TestDeployed(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	c := f.commitOn("main", "app v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	promote := func(site, source, extra string) {
		f.commitOn("sites/"+site, "Promote", map[string]string{"apps/app.yaml": "version: 2\n", "n": site + source + extra})
		// The trailers are what counts; write them as Promote does, in the last paragraph.
		gittest.Git(t, f.Dir, "update-ref", "refs/heads/sites/"+site, gittest.Git(t, f.Dir, "commit-tree", "-p", f.head("sites/"+site),
			"-m", "Promote "+rollout.Short(source)+" to "+site+"\n\nFleetwave-Rollout: rollout/demo/x\nFleetwave-Source: "+source+extra, f.head("sites/"+site)+"^{tree}"))
	}
	env := newEnv()
	env.RegisterActivity(&Git{Repo: f.open(), SourceBranch: "main"})
	deployed := func() string {
		t.Helper()
		val, err := env.ExecuteActivity((&Git{}).Deployed)
		if err != nil {
			t.Fatal(err)
		}
		var got DeployedResult
		if err := val.Get(&got); err != nil {
			t.Fatal(err)
		}
		return got.Commit
	}
	if got := deployed(); got != "" {
		t.Errorf("before any promotion: %q", got)
	}
	promote("ams-1", c, "")
	if got := deployed(); got != "" {
		t.Errorf("one site of two promoted: %q", got)
	}
	promote("ams-2", c, "")
	if got := deployed(); got != c {
		t.Errorf("both sites on %s: %q", rollout.Short(c), got)
	}
	promote("ams-2", c, "\nFleetwave-Reason: degraded")
	if got := deployed(); got != "" {
		t.Errorf("a site on a revert: %q", got)
	}
}
