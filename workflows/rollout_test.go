package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

const testCommit = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"

func testPlan(t *testing.T, scope string, extra string) string {
	t.Helper()
	return fmt.Sprintf(`apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: demo}
spec:
  sites:
    - {name: ams-1, labels: {tier: canary}}
    - {name: ams-2, labels: {region: eu}}
    - {name: fra-1, labels: {region: eu}}
    - {name: fra-2, labels: {region: eu}}
    - {name: nyc-1}
    - {name: nyc-2}
  waves:
    - {name: canary, selector: {tier: canary}, bake: 10m}
    - {name: eu, selector: {region: eu}, maxParallel: 2, bake: 30m}
    - {name: fleet, bake: 1h}
  health: {interval: 1m, failureThreshold: 3, convergenceTimeout: 10m, unknownTimeout: 5m}
  rollback: {scope: %s}
%s`, scope, extra)
}

// call is one activity invocation as the fake fleet saw it, at workflow time.
type call struct {
	Kind   string
	Sites  []string
	At     time.Time
	Commit string
}

// fakeFleet plays the git server and the sites for the mocked activities.
type fakeFleet struct {
	t    *testing.T
	env  *testsuite.TestWorkflowEnvironment
	plan string

	mu          sync.Mutex
	calls       []call
	promoted    map[string]string // site -> promotion commit
	degraded    map[string]bool   // sites whose checks fail once promoted
	unreachable map[string]bool   // sites that cannot be observed once promoted
	stuck       map[string]bool   // sites that never apply their promotion
	noop        map[string]bool   // sites already running the commit: promotion writes nothing
	found       map[string]bool   // sites whose promotion a lost attempt wrote: found, not created
	ours        map[string]bool   // sites whose branch holds this rollout's unreverted promotion
	older       map[string]bool   // commits older than every other: Inspect calls them stale
	offSource   map[string]bool   // commits not on the source branch: Inspect refuses them
	// earlier answers whether an earlier rollout of the fleet still runs (nil: none does);
	// adopt what a coordinator starting afresh takes over (nil: nothing).
	adopt   func(activities.AdoptInput) (activities.AdoptResult, error)
	earlier func(activities.EarlierInput) (activities.EarlierResult, error)
	// deployed is what the site branches' trailers say the whole fleet runs; owners who last
	// moved each site's branch.
	deployed   string
	owners     map[string]activities.Owner
	policies   []rollout.PolicyFile
	simulated  bool  // the worker's sites are a simulated fleet
	roundSizes []int // bytes of each health round's result
	// lateLanding is a site whose promotion, in flight, lands just after the first revert.
	lateLanding string
	// degradedFrom are sites whose checks fail from that workflow time on.
	degradedFrom map[string]time.Time
	// flapping are sites whose checks fail every other round; observed counts the rounds.
	flapping map[string]bool
	observed map[string]int
	// conflicts are sites whose revert conflicts with a later commit on their branch.
	conflicts map[string]bool
	// converge is the mocked convergence wait, for a test to make it take time.
	converge *testsuite.MockCallWrapper
	// promoteCall is the mocked promotion, for a test to make it fail.
	promoteCall *testsuite.MockCallWrapper
	// evidence are the final statuses the rollout wrote its evidence with.
	evidence []rollout.Status
	// rollbackEvidence is what WriteRollbackEvidence was given.
	rollbackEvidence []activities.RollbackEvidenceInput
}

func newFakeFleet(t *testing.T, env *testsuite.TestWorkflowEnvironment, plan string) *fakeFleet {
	f := &fakeFleet{t: t, env: env, plan: plan, promoted: map[string]string{},
		degraded: map[string]bool{}, unreachable: map[string]bool{}, stuck: map[string]bool{}, noop: map[string]bool{},
		found: map[string]bool{}, ours: map[string]bool{}, older: map[string]bool{}}
	var git *activities.Git
	var sites *activities.Sites
	env.RegisterActivity(git)
	env.RegisterActivity(sites)
	env.OnActivity(git.LoadPlan, mock.Anything, mock.Anything).Return(f.loadPlan)
	f.promoteCall = env.OnActivity(git.Promote, mock.Anything, mock.Anything).Return(f.promote)
	env.OnActivity(git.Landed, mock.Anything, mock.Anything).Return(f.landed)
	env.OnActivity(git.Revert, mock.Anything, mock.Anything).Return(f.revert)
	env.OnActivity(git.Inspect, mock.Anything, mock.Anything).Return(f.inspect)
	env.OnActivity(git.Owners, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.OwnersInput) (activities.OwnersResult, error) {
		f.record("owners", targetSites(in.Targets))
		f.mu.Lock()
		defer f.mu.Unlock()
		var res activities.OwnersResult
		for _, t := range in.Targets {
			res.Owners = append(res.Owners, f.owners[t.Site])
		}
		return res, nil
	})
	env.OnActivity(git.Deployed, mock.Anything).Return(func(context.Context) (activities.DeployedResult, error) {
		f.record("deployed", nil)
		return activities.DeployedResult{Commit: f.deployed}, nil
	})
	f.converge = env.OnActivity(sites.WaitConverged, mock.Anything, mock.Anything).Return(f.waitConverged)
	env.OnActivity(sites.Observe, mock.Anything, mock.Anything).Return(f.observe)
	env.OnActivity(sites.HealthRound, mock.Anything, mock.Anything).Return(f.healthRound)
	var ex *activities.Executions
	env.RegisterActivity(ex)
	env.OnActivity(ex.Adopt, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AdoptInput) (activities.AdoptResult, error) {
		f.record("adopt", nil)
		if f.adopt != nil {
			return f.adopt(in)
		}
		return activities.AdoptResult{}, nil
	})
	env.OnActivity(ex.Earlier, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.EarlierInput) (activities.EarlierResult, error) {
		f.record("earlier", nil)
		if f.earlier != nil {
			return f.earlier(in)
		}
		return activities.EarlierResult{}, nil
	})
	var ev *activities.Evidence
	env.RegisterActivity(ev)
	env.OnActivity(ev.WriteEvidence, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.EvidenceInput) (activities.EvidenceResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.evidence = append(f.evidence, in.Status)
		return activities.EvidenceResult{Branch: "evidence", Commit: "evidence-1"}, nil
	})
	env.OnActivity(ev.WriteRollbackEvidence, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RollbackEvidenceInput) (activities.EvidenceResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.rollbackEvidence = append(f.rollbackEvidence, in)
		return activities.EvidenceResult{Branch: "evidence", Commit: "evidence-2"}, nil
	})
	return f
}

func (f *fakeFleet) record(kind string, sites []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{Kind: kind, Sites: sites, At: f.env.Now()})
}

func (f *fakeFleet) callsOf(kind string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.Kind == kind {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeFleet) loadPlan(_ context.Context, in activities.LoadPlanInput) (activities.LoadPlanResult, error) {
	p, err := rollout.ParsePlan(rollout.PlanFile, []byte(f.plan))
	if err != nil {
		return activities.LoadPlanResult{}, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidPlan, nil)
	}
	return activities.LoadPlanResult{Plan: p, Commit: in.Commit, Subject: "bump app", Author: "Ada <ada@example.com>", Message: "bump app\n", Policies: f.policies, Simulated: f.simulated}, nil
}

func (f *fakeFleet) inspect(_ context.Context, in activities.InspectInput) (activities.InspectResult, error) {
	f.record("inspect", []string{in.Commit})
	res := activities.InspectResult{OnNewCommit: rollout.OnNewCommitSupersede}
	if f.offSource[in.Commit] {
		res.Refused = "commit " + rollout.Short(in.Commit) + " is not on the source branch main"
		return res, nil
	}
	if in.Done != "" && in.Commit == in.Done {
		res.Stale = in.Done
		return res, nil
	}
	if f.older[in.Commit] {
		for _, k := range append(in.Known, in.Done) {
			if k != "" {
				res.Stale = k
				return res, nil
			}
		}
	}
	if p, err := rollout.ParsePlan(rollout.PlanFile, []byte(f.plan)); err == nil {
		res.OnNewCommit = p.OnNewCommit
	}
	return res, nil
}

func targetSites(ts []activities.Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Site)
	}
	return out
}

func (f *fakeFleet) promote(_ context.Context, in activities.PromoteInput) (activities.ChangeResult, error) {
	f.record("promote", targetSites(in.Targets))
	f.mu.Lock()
	f.calls[len(f.calls)-1].Commit = in.Source
	defer f.mu.Unlock()
	var res activities.ChangeResult
	for _, t := range in.Targets {
		c := activities.Change{Site: t.Site, Branch: t.Branch, Previous: "old-" + t.Site, Commit: "promo-" + t.Site, Created: true, Ours: "promo-" + t.Site}
		switch {
		case f.noop[t.Site]:
			c.Commit, c.Created, c.Ours = c.Previous, false, ""
		case f.found[t.Site]:
			c.Previous, c.Created = c.Commit, false
		}
		f.promoted[t.Site] = c.Commit
		f.ours[t.Site] = c.Ours != ""
		res.Changes = append(res.Changes, c)
	}
	return res, nil
}

// landed reports the targets whose branch holds the rollout's promotion, as git would.
func (f *fakeFleet) landed(_ context.Context, in activities.PromoteInput) (activities.ChangeResult, error) {
	f.record("landed", targetSites(in.Targets))
	f.mu.Lock()
	defer f.mu.Unlock()
	var res activities.ChangeResult
	for _, t := range in.Targets {
		if c := f.promoted[t.Site]; c != "" && f.ours[t.Site] {
			res.Changes = append(res.Changes, activities.Change{Site: t.Site, Branch: t.Branch, Commit: c, Previous: c, Ours: c})
		}
	}
	return res, nil
}

func (f *fakeFleet) revert(_ context.Context, in activities.RevertInput) (activities.ChangeResult, error) {
	f.record("revert", targetSites(in.Targets))
	if !strings.Contains(in.Reason, "degraded") && !strings.Contains(in.Reason, "converge") && !strings.Contains(in.Reason, "rolled back by") && !strings.Contains(in.Reason, "without a verdict") {
		f.t.Errorf("revert reason %q does not say why", in.Reason)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var res activities.ChangeResult
	for _, t := range in.Targets {
		if f.conflicts[t.Site] {
			res.Changes = append(res.Changes, activities.Change{Site: t.Site, Branch: t.Branch, Previous: f.promoted[t.Site], Commit: f.promoted[t.Site],
				Problem: "revert of " + f.promoted[t.Site] + " conflicts: apps/web.yaml changed after the promotion; resolve it by hand: git switch " + t.Branch})
			continue
		}
		if !f.ours[t.Site] {
			// Git holds no promotion of this rollout on the branch: nothing to revert.
			res.Changes = append(res.Changes, activities.Change{Site: t.Site, Branch: t.Branch, Previous: f.promoted[t.Site], Commit: f.promoted[t.Site]})
			continue
		}
		res.Changes = append(res.Changes, activities.Change{Site: t.Site, Branch: t.Branch, Previous: f.promoted[t.Site], Commit: "revert-" + t.Site, Created: true, Ours: "revert-" + t.Site})
		f.promoted[t.Site] = "revert-" + t.Site
		f.ours[t.Site] = false
	}
	if s := f.lateLanding; s != "" {
		f.lateLanding = ""
		f.promoted[s], f.ours[s] = "promo-"+s, true
	}
	return res, nil
}

func (f *fakeFleet) waitConverged(_ context.Context, in activities.ConvergeInput) (activities.ConvergeResult, error) {
	var names []string
	for _, e := range in.Sites {
		names = append(names, e.Site.Name)
	}
	f.record("converge", names)
	res := activities.ConvergeResult{}
	for _, e := range in.Sites {
		st := rollout.SiteState{Site: e.Site.Name, Reachable: true, Ready: true, Revision: rollout.FormatRevision("sites/"+e.Site.Name, e.Commit)}
		ok := true
		if f.stuck[e.Site.Name] && strings.HasPrefix(e.Commit, "promo-") {
			st.Revision = "sites/" + e.Site.Name + "@sha1:old"
			ok = false
			res.TimedOut = true // the fake answers at once: as if the deadline had passed
		}
		res.States = append(res.States, st)
		res.Converged = append(res.Converged, ok)
	}
	return res, nil
}

func (f *fakeFleet) observe(_ context.Context, in activities.ObserveInput) (activities.ObserveResult, error) {
	var names []string
	for _, s := range in.Sites {
		names = append(names, s.Name)
	}
	f.record("observe", names)
	f.mu.Lock()
	defer f.mu.Unlock()
	var res activities.ObserveResult
	for _, s := range in.Sites {
		commit := f.promoted[s.Name]
		st := rollout.SiteState{Site: s.Name, Reachable: true, Ready: true, Revision: rollout.FormatRevision("sites/"+s.Name, commit),
			Checks: []rollout.CheckResult{{Name: "error-rate", OK: true, Value: 0.001, Threshold: "<= 0.01"}}}
		if f.flapping[s.Name] {
			if f.observed == nil {
				f.observed = map[string]int{}
			}
			f.observed[s.Name]++
		}
		if from, ok := f.degradedFrom[s.Name]; f.degraded[s.Name] || (ok && !f.env.Now().Before(from)) || (f.flapping[s.Name] && f.observed[s.Name]%2 == 1) {
			st.Checks[0] = rollout.CheckResult{Name: "error-rate", OK: false, Value: 0.25, Threshold: "<= 0.01"}
		}
		if f.unreachable[s.Name] {
			st = rollout.SiteState{Site: s.Name, Message: "connection refused"}
		}
		res.States = append(res.States, st)
	}
	return res, nil
}

// healthRound is the local health round: the fake's observations, reduced to the changes as
// the real activity reduces them.
func (f *fakeFleet) healthRound(ctx context.Context, in activities.HealthRoundInput) (activities.HealthRoundResult, error) {
	obs, err := f.observe(ctx, activities.ObserveInput{Sites: in.Sites, Checks: in.Checks})
	if err != nil {
		return activities.HealthRoundResult{}, err
	}
	res := activities.RoundChanges(obs.States, in.Expect, in.Report, in.Detail)
	data, _ := json.Marshal(res)
	f.mu.Lock()
	f.roundSizes = append(f.roundSizes, len(data))
	f.mu.Unlock()
	return res, nil
}

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(Rollout)
	env.RegisterWorkflow(Wave)
	env.RegisterWorkflow(Watch)
	env.SetStartTime(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{VoteOrigins(testVoteKey)}})
	return env
}

// testVoteKey is the workers' Slack vote key in the workflow tests.
var testVoteKey = VoteKey("test signing secret")

func run(t *testing.T, env *testsuite.TestWorkflowEnvironment) (rollout.Status, error) {
	t.Helper()
	env.ExecuteWorkflow(Rollout, RolloutInput{Fleet: "demo", Commit: testCommit})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	err := env.GetWorkflowError()
	var st rollout.Status
	if err == nil {
		var res RolloutResult
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		st = res.Status
	} else {
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || app.Type() != ErrTypeRolloutFailed {
			t.Fatalf("workflow error %v, want a %s application error", err, ErrTypeRolloutFailed)
		}
		if err := app.Details(&st); err != nil {
			t.Fatalf("failure details: %v", err)
		}
	}
	// The status query answers after the workflow closed, and agrees with the result.
	v, qerr := env.QueryWorkflow(QueryStatus)
	if qerr != nil {
		t.Fatalf("query: %v", qerr)
	}
	var q rollout.Status
	if err := v.Get(&q); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, q); diff != "" {
		t.Errorf("status query differs from result (-result +query):\n%s", diff)
	}
	return st, err
}

func sitesOf(calls []call) [][]string {
	var out [][]string
	for _, c := range calls {
		out = append(out, c.Sites)
	}
	return out
}

func TestRolloutWavesInOrderWithBatchesAndBake(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	st, err := run(t, env)
	if err != nil {
		t.Fatalf("rollout failed: %v", err)
	}
	wantPromotions := [][]string{{"ams-1"}, {"ams-2", "fra-1"}, {"fra-2"}, {"nyc-1", "nyc-2"}}
	if diff := cmp.Diff(wantPromotions, sitesOf(f.callsOf("promote"))); diff != "" {
		t.Errorf("promotion batches (-want +got):\n%s", diff)
	}
	if got := f.callsOf("revert"); len(got) != 0 {
		t.Errorf("reverts on a healthy rollout: %v", got)
	}
	// Each wave starts only after the previous one baked: canary 10m, eu 30m.
	p := f.callsOf("promote")
	if gap := p[1].At.Sub(p[0].At); gap < 10*time.Minute {
		t.Errorf("eu wave started %s after the canary, want at least the 10m bake", gap)
	}
	if gap := p[3].At.Sub(p[2].At); gap < 30*time.Minute {
		t.Errorf("fleet wave started %s after eu's last batch, want at least the 30m bake", gap)
	}
	// Health is checked every interval during bake: canary 10m/1m -> 11 rounds; then the
	// canary stays watched every minute until the rollout ends (eu 30m, fleet 1h: 90 more).
	canaryRounds, inBake := 0, 0
	for _, c := range f.callsOf("observe") {
		if slices.Equal(c.Sites, []string{"ams-1"}) {
			canaryRounds++
			if !c.At.After(p[1].At) {
				inBake++
			}
		}
	}
	if inBake != 11 || canaryRounds != 101 {
		t.Errorf("canary health rounds = %d in its bake, %d in all; want 11 (at 0, 1m, ..., 10m), 101", inBake, canaryRounds)
	}
	if st.State != rollout.StateSucceeded || st.Subject != "bump app" || st.Wave != "fleet" || st.Simulated {
		t.Errorf("status = %s %q wave %s simulated %v", st.State, st.Subject, st.Wave, st.Simulated)
	}
	// The evidence is written once, at the end, with the final status.
	if len(f.evidence) != 1 || f.evidence[0].State != rollout.StateSucceeded || len(f.evidence[0].Waves) != len(st.Waves) {
		t.Errorf("evidence written with %d statuses: %+v", len(f.evidence), f.evidence)
	}
	for _, w := range st.Waves {
		if w.State != rollout.StateSucceeded {
			t.Errorf("wave %s state %s", w.Name, w.State)
		}
		if w.FinishedAt.Sub(w.ConvergedAt) < 0 || w.BakeUntil.After(w.FinishedAt) {
			t.Errorf("wave %s finished at %s before its bake ended at %s", w.Name, w.FinishedAt, w.BakeUntil)
		}
		for _, s := range w.Sites {
			if s.Verdict != rollout.VerdictHealthy || s.Promotion != "promo-"+s.Name || !s.Promoted {
				t.Errorf("site %s: %+v", s.Name, s)
			}
		}
	}
}

func TestRolloutCanaryDegradedRevertsAndStops(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.degraded["ams-1"] = true
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout succeeded with a degraded canary")
	}
	msg := err.Error()
	for _, want := range []string{"site ams-1 degraded in wave canary", "check error-rate failed", "value 0.25", "<= 0.01", "3 times in a row"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure %q does not contain %q", msg, want)
		}
	}
	if diff := cmp.Diff([][]string{{"ams-1"}}, sitesOf(f.callsOf("promote"))); diff != "" {
		t.Errorf("later waves touched (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"ams-1"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts (-want +got):\n%s", diff)
	}
	// The revert is awaited: a convergence wait for the revert commit follows it.
	conv := f.callsOf("converge")
	if last := conv[len(conv)-1]; !slices.Equal(last.Sites, []string{"ams-1"}) || last.At.Before(f.callsOf("revert")[0].At) {
		t.Errorf("no convergence wait after the revert: %v", conv)
	}
	// Degraded after three failed rounds, one interval apart: at 0, 1m, 2m after converging.
	if d := f.callsOf("revert")[0].At.Sub(f.callsOf("promote")[0].At); d != 2*time.Minute {
		t.Errorf("revert %s after promotion, want 2m (3 failed rounds at 1m intervals)", d)
	}
	if st.State != rollout.StateFailed || st.Waves[0].State != rollout.StateFailed {
		t.Errorf("state %s, canary %s", st.State, st.Waves[0].State)
	}
	s := st.Waves[0].Sites[0]
	if s.Verdict != rollout.VerdictReverted || s.Revert != "revert-ams-1" {
		t.Errorf("canary site: %+v", s)
	}
	if len(f.evidence) != 1 || f.evidence[0].State != rollout.StateFailed || f.evidence[0].Waves[0].Sites[0].Revert != "revert-ams-1" {
		t.Errorf("evidence of the failed rollout: %+v", f.evidence)
	}
	for _, w := range st.Waves[1:] {
		if w.State != rollout.StatePending {
			t.Errorf("wave %s state %s, want Pending", w.Name, w.State)
		}
	}
}

func TestRolloutRevertScopes(t *testing.T) {
	tests := []struct {
		scope   string
		reverts [][]string
	}{
		{"site", [][]string{{"nyc-2"}}},
		{"wave", [][]string{{"nyc-1", "nyc-2"}}},
		{"all", [][]string{{"nyc-1", "nyc-2"}, {"ams-2", "fra-1", "fra-2"}, {"ams-1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.scope, func(t *testing.T) {
			env := newEnv(t)
			f := newFakeFleet(t, env, testPlan(t, tt.scope, ""))
			f.degraded["nyc-2"] = true
			st, err := run(t, env)
			if err == nil || !strings.Contains(err.Error(), "site nyc-2 degraded in wave fleet") {
				t.Fatalf("error = %v", err)
			}
			if diff := cmp.Diff(tt.reverts, sitesOf(f.callsOf("revert"))); diff != "" {
				t.Errorf("reverts (-want +got):\n%s", diff)
			}
			reverted := 0
			for _, w := range st.Waves {
				for _, s := range w.Sites {
					if s.Verdict == rollout.VerdictReverted {
						reverted++
					}
				}
			}
			if want := len(slices.Concat(tt.reverts...)); reverted != want {
				t.Errorf("%d sites marked reverted, want %d", reverted, want)
			}
		})
	}
}

// TestRolloutRevertsAroundAConflict: one site of the failed wave cannot be reverted (a later
// commit conflicts). The others are reverted all the same, and the conflicting one is named,
// with how to fix it, in its status and the rollout's reason.
func TestRolloutRevertsAroundAConflict(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "all", ""))
	f.degraded["nyc-2"] = true
	f.conflicts = map[string]bool{"fra-1": true}
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout succeeded")
	}
	if !strings.Contains(err.Error(), "site nyc-2 degraded in wave fleet") || !strings.Contains(err.Error(), "site fra-1 not reverted: revert of") ||
		!strings.Contains(err.Error(), "git switch sites/fra-1") {
		t.Errorf("error %q does not name the degraded site, the site not reverted and the fix", err)
	}
	verdicts := map[string]rollout.Verdict{}
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			verdicts[s.Name] = s.Verdict
			if s.Name == "fra-1" && (!s.Promoted || !strings.HasPrefix(s.Message, "not reverted: ")) {
				t.Errorf("fra-1: %+v, want it still promoted and saying why it was not reverted", s)
			}
		}
	}
	for _, s := range []string{"nyc-1", "nyc-2", "ams-2", "fra-2", "ams-1"} {
		if verdicts[s] != rollout.VerdictReverted {
			t.Errorf("%s is %s, want reverted despite fra-1's conflict", s, verdicts[s])
		}
	}
	if verdicts["fra-1"] == rollout.VerdictReverted {
		t.Error("fra-1 marked reverted")
	}
}

func TestRolloutNoAutomaticRollback(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, strings.Replace(testPlan(t, "wave", ""), "{scope: wave}", "{automatic: false}", 1))
	f.degraded["ams-1"] = true
	if _, err := run(t, env); err == nil {
		t.Fatal("rollout succeeded")
	}
	if got := f.callsOf("revert"); len(got) != 0 {
		t.Errorf("reverted with automatic: false: %v", got)
	}
}

func TestRolloutInvalidPlanWritesNothing(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, strings.Replace(testPlan(t, "wave", ""), "bake: 30m", "bake: 30 minutes", 1))
	st, err := run(t, env)
	if err == nil || !strings.Contains(err.Error(), `fleetwave.yaml:14:`) || !strings.Contains(err.Error(), `invalid duration "30 minutes"`) {
		t.Fatalf("error = %v, want the plan error with its position", err)
	}
	if n := len(f.callsOf("promote")) + len(f.callsOf("revert")); n != 0 {
		t.Errorf("%d git writes with an invalid plan", n)
	}
	if st.State != rollout.StateFailed {
		t.Errorf("state %s", st.State)
	}
}

func TestRolloutConvergenceTimeoutDegrades(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.stuck["fra-1"] = true
	_, err := run(t, env)
	if err == nil || !strings.Contains(err.Error(), "site fra-1 degraded in wave eu") || !strings.Contains(err.Error(), "did not converge within 10m0s") {
		t.Fatalf("error = %v", err)
	}
	// The stuck batch is reverted (scope wave: ams-2 and fra-1); fra-2's batch never starts.
	if diff := cmp.Diff([][]string{{"ams-2", "fra-1"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"ams-1"}, {"ams-2", "fra-1"}}, sitesOf(f.callsOf("promote"))); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
}

func TestRolloutUnknownTooLongFailsClosed(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.unreachable["ams-1"] = true
	_, err := run(t, env)
	if err == nil || !strings.Contains(err.Error(), "unreachable for 5m0s") {
		t.Fatalf("error = %v, want the canary to fail closed after unknownTimeout", err)
	}
	if d := f.callsOf("revert")[0].At.Sub(f.callsOf("promote")[0].At); d != 5*time.Minute {
		t.Errorf("failed closed %s after promotion, want 5m", d)
	}
}

func TestRolloutSitesAlreadyOnTheTreeAreNotReverted(t *testing.T) {
	// ams-2 already runs the commit's tree without a promotion of this rollout (its branch
	// was created from main): nothing written, so nothing of ams-2 is reverted when fra-1
	// degrades.
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.noop["ams-2"] = true
	f.degraded["fra-1"] = true
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout succeeded")
	}
	if diff := cmp.Diff([][]string{{"fra-1", "fra-2"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts (-want +got):\n%s", diff)
	}
	if s := st.Waves[1].Site("ams-2"); s.Promoted || s.Promotion != "old-ams-2" {
		t.Errorf("ams-2 status %+v", s)
	}
}

func TestRolloutFoundPromotionIsReverted(t *testing.T) {
	// The git server applied the canary's push and the response was lost (a 502, a worker
	// killed after the push): the retry finds the promotion instead of writing it. It is this
	// rollout's all the same, so the degraded canary is reverted.
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.found["ams-1"] = true
	f.degraded["ams-1"] = true
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout succeeded with a degraded canary")
	}
	if diff := cmp.Diff([][]string{{"ams-1"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts (-want +got):\n%s", diff)
	}
	if s := st.Waves[0].Sites[0]; !s.Promoted || s.Verdict != rollout.VerdictReverted || s.Revert != "revert-ams-1" {
		t.Errorf("canary status %+v, want promoted and reverted", s)
	}
}

func TestRolloutUnsettledWaveRevertedFromGit(t *testing.T) {
	// The eu wave's workflow ends without a verdict (terminated from outside, say) after it
	// promoted ams-2 and fra-1: the rollout does not know which sites it wrote, so it asks the
	// revert for every eu site, and git reverts exactly the promoted ones. fra-2's promotion was
	// still in flight and lands after that first pass: a second pass, once no attempt of the
	// wave's can still push, reverts it too.
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.lateLanding = "fra-2"
	env.OnWorkflow(Wave, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in WaveInput) (WaveResult, error) {
		if in.Wave.Name != "eu" {
			return Wave(ctx, in)
		}
		var git *activities.Git
		var promoted activities.ChangeResult
		_ = workflow.ExecuteActivity(gitOptions(ctx, "promote", gitRetries), git.Promote, activities.PromoteInput{Rollout: in.Rollout, Wave: in.Wave.Name, Source: in.Commit,
			Targets: []activities.Target{{Site: "ams-2", Branch: "sites/ams-2"}, {Site: "fra-1", Branch: "sites/fra-1"}}}).Get(ctx, &promoted)
		return WaveResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_START_TO_CLOSE, nil)
	})
	st, err := run(t, env)
	if err == nil || !strings.Contains(err.Error(), "wave eu ended without a verdict") {
		t.Fatalf("error = %v, want the wave's end without a verdict", err)
	}
	reverts := f.callsOf("revert")
	if diff := cmp.Diff([][]string{{"ams-2", "fra-1", "fra-2"}, {"fra-2"}}, sitesOf(reverts)); diff != "" {
		t.Fatalf("reverts (-want +got):\n%s", diff)
	}
	if gap := reverts[1].At.Sub(reverts[0].At); gap < 2*time.Minute {
		t.Errorf("second pass %s after the first, want at least the git activity's 2m timeout", gap)
	}
	eu := st.Waves[1]
	if !eu.Unsettled || eu.State != rollout.StateFailed {
		t.Errorf("eu wave %s unsettled=%v", eu.State, eu.Unsettled)
	}
	for _, s := range eu.Sites {
		want := rollout.VerdictReverted
		if s.Verdict != want {
			t.Errorf("site %s verdict %s, want %s (%s)", s.Name, s.Verdict, want, s.Message)
		}
	}
	// The canary, healthy in an earlier wave, is left alone under scope wave.
	if s := st.Waves[0].Sites[0]; s.Verdict != rollout.VerdictHealthy {
		t.Errorf("canary %+v", s)
	}
}

func TestRolloutFailureBudget(t *testing.T) {
	// The fleet wave may lose one site: nyc-2 degrades, is reverted alone, and the rollout
	// goes on to succeed with nyc-1 promoted.
	env := newEnv(t)
	f := newFakeFleet(t, env, strings.Replace(testPlan(t, "wave", ""), "{name: fleet, bake: 1h}", "{name: fleet, bake: 1h, maxFailures: 1}", 1))
	f.degraded["nyc-2"] = true
	st, err := run(t, env)
	if err != nil {
		t.Fatalf("rollout failed although nyc-2 was within the failure budget: %v", err)
	}
	if diff := cmp.Diff([][]string{{"nyc-2"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts (-want +got):\n%s", diff)
	}
	fleet := st.Waves[2]
	if fleet.State != rollout.StateSucceeded || fleet.Message != "1 site reverted within the failure budget (maxFailures 1)" {
		t.Errorf("fleet wave %s: %q", fleet.State, fleet.Message)
	}
	nyc1, nyc2 := fleet.Site("nyc-1"), fleet.Site("nyc-2")
	if nyc1.Verdict != rollout.VerdictHealthy || nyc2.Verdict != rollout.VerdictReverted || nyc2.Revert != "revert-nyc-2" ||
		!strings.Contains(nyc2.Message, "reverted within the failure budget") {
		t.Errorf("nyc-1 %s; nyc-2 %s %q", nyc1.Verdict, nyc2.Verdict, nyc2.Message)
	}
	// The revert is awaited before the bake goes on, and the bake's later rounds leave nyc-2 out.
	var after int
	for _, c := range f.callsOf("observe") {
		if c.At.After(f.callsOf("revert")[0].At) {
			after++
			if slices.Contains(c.Sites, "nyc-2") {
				t.Errorf("health round at %s observes the reverted nyc-2", c.At)
			}
		}
	}
	if after == 0 {
		t.Error("the bake stopped after the budgeted revert")
	}
}

func TestRolloutPastTheFailureBudget(t *testing.T) {
	// A budget of 1 in the eu wave: fra-1 never applies its commit and is reverted alone, the
	// next batch goes on; then fra-2 degrades in the bake and fails the wave. Scope wave reverts
	// what is left of it (ams-2, fra-2), not fra-1 again.
	env := newEnv(t)
	f := newFakeFleet(t, env, strings.Replace(testPlan(t, "wave", ""), "maxParallel: 2, bake: 30m}", "maxParallel: 2, bake: 30m, maxFailures: 1}", 1))
	f.stuck["fra-1"] = true
	f.degraded["fra-2"] = true
	st, err := run(t, env)
	if err == nil || !strings.Contains(err.Error(), "site fra-2 degraded in wave eu") {
		t.Fatalf("error = %v, want fra-2 past the budget", err)
	}
	if diff := cmp.Diff([][]string{{"fra-1"}, {"ams-2", "fra-2"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"ams-1"}, {"ams-2", "fra-1"}, {"fra-2"}}, sitesOf(f.callsOf("promote"))); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
	for _, s := range st.Waves[1].Sites {
		if s.Verdict != rollout.VerdictReverted {
			t.Errorf("site %s %s, want reverted", s.Name, s.Verdict)
		}
	}
}

// TestLargeWaveHealthRoundsReportChanges: a wave of 600 sites. Each health round reports only
// what is not healthy (and healthy measurements within a small budget), so what a round adds
// to the history stays small; the status still shows every site healthy at its promotion, and
// the one site that degrades is found and reverted.
func TestLargeWaveHealthRoundsReportChanges(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, oneWavePlan(600, "%03d", "bake: 10m", "health: {interval: 1m, failureThreshold: 3}\n  rollback: {scope: site}"))
	f.degraded["s321"] = true
	st, err := run(t, env)
	sizes := f.roundSizes
	if err == nil || !strings.Contains(err.Error(), "site s321 degraded in wave all") {
		t.Fatalf("error = %v, want s321 degraded", err)
	}
	if diff := cmp.Diff([][]string{{"s321"}}, sitesOf(f.callsOf("revert"))); diff != "" {
		t.Errorf("reverts (-want +got):\n%s", diff)
	}
	if len(sizes) != 6 {
		t.Errorf("%d health round results, want 6 (s321 fails 3 rounds in a row, each round in 2 parts of at most 500 sites)", len(sizes))
	}
	for i := 0; i+1 < len(sizes); i += 2 {
		if n := sizes[i] + sizes[i+1]; n > 20<<10 {
			t.Errorf("a health round of 600 sites recorded %d bytes, want about the 16 KiB budget at most", n)
		}
	}
	healthy := 0
	for _, s := range st.Waves[0].Sites {
		if s.Verdict == rollout.VerdictHealthy && s.Revision == rollout.FormatRevision("sites/"+s.Name, "promo-"+s.Name) {
			healthy++
		}
	}
	if healthy != 599 {
		t.Errorf("%d sites healthy at their promotion, want 599", healthy)
	}
}

// TestRolloutStatusShowsTheWaveLive: while a wave runs, the rollout's own status query shows
// it (the wave reports its changes), without anyone asking the wave's workflow.
func TestRolloutStatusShowsTheWaveLive(t *testing.T) {
	env := newEnv(t)
	newFakeFleet(t, env, testPlan(t, "wave", ""))
	var during rollout.Status
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		if err != nil {
			t.Error(err)
			return
		}
		_ = v.Get(&during)
	}, 5*time.Minute) // in the canary's 10m bake
	if _, err := run(t, env); err != nil {
		t.Fatal(err)
	}
	canary := during.Waves[0]
	if canary.State != rollout.StateBaking || canary.BakeUntil.IsZero() {
		t.Errorf("canary during its bake: %s until %s, want Baking", canary.State, canary.BakeUntil)
	}
	if s := canary.Sites[0]; s.Verdict != rollout.VerdictHealthy || s.Promotion != "promo-ams-1" || !s.Promoted || len(s.Checks) == 0 {
		t.Errorf("ams-1 during the bake: %+v, want healthy at its promotion with its measurements", s)
	}
	if during.Waves[1].State != rollout.StatePending {
		t.Errorf("eu during the canary: %s", during.Waves[1].State)
	}
}

// TestRolloutSaysItsSitesWereSimulated: a worker observing a simulated fleet (serve --driver
// sim) says so with the plan it loads, and the rollout's status carries it to every reader.
func TestRolloutSaysItsSitesWereSimulated(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.simulated = true
	st, err := run(t, env)
	if err != nil {
		t.Fatalf("rollout failed: %v", err)
	}
	if st.State != rollout.StateSucceeded || !st.Simulated {
		t.Errorf("status %s, simulated %v; want Succeeded on simulated sites", st.State, st.Simulated)
	}
}

// TestLargeWavePromotesInLargeChunks: a wave of 3,000 sites is pushed in two Promote calls
// (2,500 and 500 sites); a wave workflow started before versionPromoteChunk keeps its
// 500-site calls.
func TestLargeWavePromotesInLargeChunks(t *testing.T) {
	plan := oneWavePlan(3000, "%04d", "bake: 1m", "health: {interval: 1m}")
	for _, tt := range []struct {
		version workflow.Version
		sizes   []int
	}{
		{1, []int{2500, 500}},
		{workflow.DefaultVersion, []int{500, 500, 500, 500, 500, 500}},
	} {
		env := newEnv(t)
		env.OnGetVersion(versionPromoteChunk, workflow.DefaultVersion, 1).Return(tt.version)
		f := newFakeFleet(t, env, plan)
		st, err := run(t, env)
		if err != nil || st.State != rollout.StateSucceeded {
			t.Fatalf("version %d: %s, %v", tt.version, st.State, err)
		}
		var sizes []int
		promoted := map[string]bool{}
		for _, c := range f.callsOf("promote") {
			sizes = append(sizes, len(c.Sites))
			for _, s := range c.Sites {
				promoted[s] = true
			}
		}
		if !slices.Equal(sizes, tt.sizes) || len(promoted) != 3000 {
			t.Errorf("version %d: Promote calls of %v sites, %d sites promoted; want %v and 3000", tt.version, sizes, len(promoted), tt.sizes)
		}
	}
}

// oneWavePlan is a plan of n sites s<number> (numbered with format) in one wave "all" with the
// wave's settings, then the spec's lines in tail.
func oneWavePlan(n int, format, wave, tail string) string {
	var b strings.Builder
	b.WriteString("apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: demo}\nspec:\n  sites:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - {name: s"+format+"}\n", i)
	}
	fmt.Fprintf(&b, "  waves:\n    - {name: all, %s}\n  %s\n", wave, tail)
	return b.String()
}
