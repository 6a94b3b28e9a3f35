package workflows

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

const (
	commitA = "aaaaaaa000000000000000000000000000000001"
	commitB = "bbbbbbb000000000000000000000000000000002"
	commitC = "ccccccc000000000000000000000000000000003"
)

// runFleet runs the fleet workflow with commits submitted at the given times, then cancels it
// at the end (it runs forever otherwise) and returns its final state.
func runFleet(t *testing.T, plan string, submits map[time.Duration][]string, end time.Duration) (*fakeFleet, FleetState) {
	t.Helper()
	return runFleetWith(t, plan, nil, submits, end)
}

// runFleetWith is runFleet with setup applied to the fake fleet before the workflow starts.
func runFleetWith(t *testing.T, plan string, setup func(*fakeFleet), submits map[time.Duration][]string, end time.Duration) (*fakeFleet, FleetState) {
	t.Helper()
	env := newEnv(t)
	env.RegisterWorkflow(Fleet)
	f := newFakeFleet(t, env, plan)
	if setup != nil {
		setup(f)
	}
	for at, commits := range submits {
		env.RegisterDelayedCallback(func() {
			for _, c := range commits {
				env.SignalWorkflow(SignalCommit, CommitSignal{Commit: c})
			}
		}, at)
	}
	var st FleetState
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryFleet)
		if err != nil {
			t.Error(err)
		} else if err := v.Get(&st); err != nil {
			t.Error(err)
		}
		env.CancelWorkflow()
	}, end)
	env.ExecuteWorkflow(Fleet, FleetInput{Fleet: "demo", SourceBranch: "main"})
	if !env.IsWorkflowCompleted() {
		t.Fatal("fleet workflow did not end")
	}
	return f, st
}

// promotedCommits lists, in order, the commit of each promotion batch.
func promotedCommits(f *fakeFleet) []string {
	var out []string
	for _, c := range f.callsOf("promote") {
		out = append(out, c.Commit[:1]+":"+strings.Join(c.Sites, ","))
	}
	return out
}

func TestFleetSupersede(t *testing.T) {
	// A starts; B arrives during A's canary bake and asks A to stop; C arrives with it, before A
	// stopped, and replaces B, which never starts. C then rolls out completely.
	f, st := runFleet(t, testPlan(t, "wave", ""), map[time.Duration][]string{
		time.Second: {commitA}, 5 * time.Minute: {commitB, commitC},
	}, 10*time.Hour)
	want := []string{"a:ams-1", "c:ams-1", "c:ams-2,fra-1", "c:fra-2", "c:nyc-1,nyc-2"}
	if diff := cmp.Diff(want, promotedCommits(f)); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{commitB}, st.Superseded); diff != "" {
		t.Errorf("superseded before starting (-want +got):\n%s", diff)
	}
	if st.Running != "" || len(st.Queue) != 0 {
		t.Errorf("fleet not idle at the end: %+v", st)
	}
	// One rollout promotes at a time: C's first promotion comes after A stopped (at once, in
	// its bake), not before B/C arrived.
	p := f.callsOf("promote")
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	if d := p[1].At.Sub(start); d < 5*time.Minute {
		t.Errorf("C started %s after the start, before it was submitted at 5m", d)
	}
	if len(f.callsOf("revert")) != 0 {
		t.Errorf("a superseded rollout reverted sites")
	}
}

func TestFleetQueue(t *testing.T) {
	plan := testPlan(t, "wave", "  onNewCommit: queue\n")
	f, st := runFleet(t, plan, map[time.Duration][]string{
		time.Second: {commitA}, 5 * time.Minute: {commitB}, 6 * time.Minute: {commitC}, 7 * time.Minute: {commitA},
	}, 20*time.Hour)
	var got []string
	for _, c := range promotedCommits(f) {
		got = append(got, c[:1])
	}
	want := []string{"a", "a", "a", "a", "b", "b", "b", "b", "c", "c", "c", "c"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("promotions by commit (-want +got):\n%s", diff)
	}
	// B's first promotion waits until A's rollout ended: after A's last wave baked (1h).
	p := f.callsOf("promote")
	if d := p[4].At.Sub(p[3].At); d < time.Hour {
		t.Errorf("B started %s after A's last wave was promoted, before A's 1h bake ended", d)
	}
	if len(st.Superseded) != 0 || st.Running != "" {
		t.Errorf("state %+v", st)
	}
}

func TestFleetPollsTheSourceBranch(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(Fleet)
	f := newFakeFleet(t, env, testPlan(t, "wave", "  onNewCommit: queue\n"))
	start := env.Now()
	var git *activities.Git
	heads := 0
	env.OnActivity(git.Head, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.HeadInput) (activities.HeadResult, error) {
		heads++
		if in.Branch != "main" {
			t.Errorf("polled branch %q", in.Branch)
		}
		// main moves from A to B an hour in, while A is still rolling out.
		if env.Now().Sub(start) < time.Hour {
			return activities.HeadResult{Commit: commitA}, nil
		}
		return activities.HeadResult{Commit: commitB}, nil
	})
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Hour)
	env.ExecuteWorkflow(Fleet, FleetInput{Fleet: "demo", SourceBranch: "main", Poll: 30 * time.Second})
	var got []string
	for _, c := range promotedCommits(f) {
		got = append(got, c[:1])
	}
	if diff := cmp.Diff([]string{"a", "a", "a", "a", "b", "b", "b", "b"}, got); diff != "" {
		t.Errorf("promotions by commit (-want +got):\n%s", diff)
	}
	// B is queued behind A (onNewCommit: queue): it starts when A's 1h40m rollout ends.
	p := f.callsOf("promote")
	if d := p[4].At.Sub(start); d < 100*time.Minute {
		t.Errorf("B rolled out %s after the start, before A ended", d)
	}
	if heads < 4*60*2-10 {
		t.Errorf("polled %d times in 4h at 30s", heads)
	}
}

func TestFleetContinuesAsNewWithItsState(t *testing.T) {
	defer func(n int) { maxRounds = n }(maxRounds)
	maxRounds = 3
	env := newEnv(t)
	env.RegisterWorkflow(Fleet)
	newFakeFleet(t, env, testPlan(t, "wave", "  onNewCommit: queue\n"))
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCommit, CommitSignal{Commit: commitA}) }, time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalCommit, CommitSignal{Commit: commitB})
		env.SignalWorkflow(SignalCommit, CommitSignal{Commit: commitC})
	}, time.Minute)
	env.ExecuteWorkflow(Fleet, FleetInput{Fleet: "demo", SourceBranch: "main"})
	var can *workflow.ContinueAsNewError
	if !errors.As(env.GetWorkflowError(), &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", env.GetWorkflowError())
	}
	var next FleetInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	// A runs, B and C wait: nothing is lost across the new run.
	want := FleetState{Running: RolloutID("demo", commitA), RunningCommit: commitA, Queue: []string{commitB, commitC}, Seen: []string{commitA, commitB, commitC}, Adopted: true}
	if diff := cmp.Diff(want, next.State); diff != "" {
		t.Errorf("carried state (-want +got):\n%s", diff)
	}
	if next.Fleet != "demo" || next.SourceBranch != "main" {
		t.Errorf("carried input %+v", next)
	}
}

func TestFleetIgnoresRedeliveredAndLateCommits(t *testing.T) {
	const old = "0000001000000000000000000000000000000000"
	// During A's canary bake: A again (a redelivered push event) and a commit older than A
	// (a late one). Neither may stop A.
	f, st := runFleetWith(t, testPlan(t, "wave", ""), func(f *fakeFleet) { f.older[old] = true },
		map[time.Duration][]string{time.Second: {commitA}, 5 * time.Minute: {commitA, old}}, 5*time.Hour)
	want := []string{"a:ams-1", "a:ams-2,fra-1", "a:fra-2", "a:nyc-1,nyc-2"}
	if diff := cmp.Diff(want, promotedCommits(f)); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
	if len(f.callsOf("inspect")) != 2 {
		t.Errorf("inspected %d commits, want 2 (the redelivery is known without asking git)", len(f.callsOf("inspect")))
	}
	if len(st.Superseded) != 0 || len(st.Queue) != 0 || st.Running != "" {
		t.Errorf("state %+v", st)
	}
}

// TestFleetNeverRollsBackSilently: once A rolled out, a late or replayed push of a commit
// older than A (or of A itself) is not rolled out again, even when the fleet has forgotten it
// saw it: that would be a silent downgrade.
func TestFleetNeverRollsBackSilently(t *testing.T) {
	const old = "0000001000000000000000000000000000000000"
	// Long after A succeeded: the older commit.
	f, st := runFleetWith(t, testPlan(t, "wave", ""), func(f *fakeFleet) { f.older[old] = true },
		map[time.Duration][]string{time.Second: {commitA}, 5 * time.Hour: {old}}, 10*time.Hour)
	want := []string{"a:ams-1", "a:ams-2,fra-1", "a:fra-2", "a:nyc-1,nyc-2"}
	if diff := cmp.Diff(want, promotedCommits(f)); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
	if st.LastSucceeded != commitA || st.Running != "" || len(st.Queue) != 0 {
		t.Errorf("state %+v, want idle with A as the last success", st)
	}
}

// TestFleetNoticesARolloutThatClosedSilently: A's rollout closes without its done signal (it
// was terminated from outside, and terminated workflows run no code). The coordinator sees the
// child close and starts the queued B instead of waiting for ever.
func TestFleetNoticesARolloutThatClosedSilently(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(Fleet)
	f := newFakeFleet(t, env, testPlan(t, "wave", "  onNewCommit: queue\n"))
	env.OnWorkflow(Rollout, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in RolloutInput) (RolloutResult, error) {
		if in.Commit == commitA {
			// Stuck for an hour, then gone without a word.
			_ = workflow.Sleep(ctx, time.Hour)
			return RolloutResult{}, temporal.NewNonRetryableApplicationError("terminated", "Terminated", nil)
		}
		return Rollout(ctx, in)
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCommit, CommitSignal{Commit: commitA}) }, time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCommit, CommitSignal{Commit: commitB}) }, time.Minute)
	var st FleetState
	env.RegisterDelayedCallback(func() {
		v, _ := env.QueryWorkflow(QueryFleet)
		_ = v.Get(&st)
		env.CancelWorkflow()
	}, 5*time.Hour)
	env.ExecuteWorkflow(Fleet, FleetInput{Fleet: "demo", SourceBranch: "main"})
	if diff := cmp.Diff([]string{"b:ams-1", "b:ams-2,fra-1", "b:fra-2", "b:nyc-1,nyc-2"}, promotedCommits(f)); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	if p := f.callsOf("promote"); len(p) > 0 && p[0].At.Sub(start) < time.Hour {
		t.Errorf("B started %s in, before A closed", p[0].At.Sub(start))
	}
	if st.Running != "" || len(st.Queue) != 0 {
		t.Errorf("fleet not idle at the end: %+v", st)
	}
}

// TestFleetAsksTemporalAfterContinueAsNew: a new run of the coordinator (continue-as-new)
// carries a running rollout but not its child future. It asks Temporal every minute; once the
// rollout is found closed (terminated), the queued commit goes next.
func TestFleetAsksTemporalAfterContinueAsNew(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(Fleet)
	f := newFakeFleet(t, env, testPlan(t, "wave", "  onNewCommit: queue\n"))
	start := env.Now()
	var ex *activities.Executions // registered by newFakeFleet
	asked := 0
	env.OnActivity(ex.Execution, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExecutionInput) (activities.ExecutionResult, error) {
		asked++
		if in.WorkflowID != RolloutID("demo", commitA) {
			t.Errorf("asked about %s", in.WorkflowID)
		}
		// Terminated 10 minutes in.
		if env.Now().Sub(start) < 10*time.Minute {
			return activities.ExecutionResult{Running: true, Status: "Running"}, nil
		}
		return activities.ExecutionResult{Status: "Terminated"}, nil
	})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCommit, CommitSignal{Commit: commitB}) }, time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Hour)
	env.ExecuteWorkflow(Fleet, FleetInput{Fleet: "demo", SourceBranch: "main", State: FleetState{
		Running: RolloutID("demo", commitA), RunningCommit: commitA, Seen: []string{commitA}}})
	p := f.callsOf("promote")
	if len(p) == 0 || p[0].Commit != commitB {
		t.Fatalf("promotions %v, want B's", promotedCommits(f))
	}
	if d := p[0].At.Sub(start); d < 10*time.Minute || d > 11*time.Minute+time.Second {
		t.Errorf("B started %s in, want within a minute of A's termination at 10m", d)
	}
	if asked < 10 || asked > 12 {
		t.Errorf("asked Temporal %d times, want about once a minute until it answered", asked)
	}
}

// TestFleetRefusesCommitsOffTheSourceBranch: a commit the inspection says is not on the source
// branch starts no rollout, whoever submitted it; the fleet lists it with the reason, and a
// commit on the branch after it rolls out as usual.
func TestFleetRefusesCommitsOffTheSourceBranch(t *testing.T) {
	f, st := runFleetWith(t, testPlan(t, "wave", ""), func(f *fakeFleet) { f.offSource = map[string]bool{commitA: true} },
		map[time.Duration][]string{time.Second: {commitA}, time.Minute: {commitB}}, 10*time.Hour)
	for _, c := range promotedCommits(f) {
		if strings.HasPrefix(c, "a:") {
			t.Fatalf("promoted %s: the refused commit was rolled out", c)
		}
	}
	if len(promotedCommits(f)) == 0 {
		t.Error("commit B, on the branch, was not rolled out")
	}
	want := []RefusedCommit{{Commit: commitA, Reason: "commit aaaaaaa is not on the source branch main"}}
	if diff := cmp.Diff(want, st.Refused); diff != "" {
		t.Errorf("refused (-want +got):\n%s", diff)
	}
	if slices.Contains(st.Seen, commitA) {
		t.Error("a refused commit is Seen: once merged, it would never roll out")
	}
}

// TestRolloutWaitsForAnEarlierOne: a rollout whose fleet has an earlier rollout still running
// (a coordinator that lost track of it: terminated, reset) promotes nothing until that one
// ends, asking every 30 s; if nobody can tell, it waits too.
func TestRolloutWaitsForAnEarlierOne(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	start := env.Now()
	f.earlier = func(in activities.EarlierInput) (activities.EarlierResult, error) {
		if in.Fleet != "demo" || in.Attribute != AttrFleet.GetName() || in.Self == "" || in.Started.IsZero() {
			t.Errorf("asked %+v", in)
		}
		switch at := env.Now().Sub(start); {
		case at < 2*time.Minute:
			return activities.EarlierResult{Rollouts: []string{"rollout/demo/0000000000ff"}}, nil
		case at < 3*time.Minute:
			return activities.EarlierResult{}, errors.New("visibility unavailable")
		}
		return activities.EarlierResult{}, nil
	}
	var waiting string
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		if err != nil {
			t.Fatal(err)
		}
		var st rollout.RolloutStatus
		if err := v.Get(&st); err != nil {
			t.Fatal(err)
		}
		waiting = st.Status.Waves[0].Message
	}, time.Minute)
	env.ExecuteWorkflow(Rollout, RolloutInput{Fleet: "demo", Commit: commitA})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if want := "waiting for rollout rollout/demo/0000000000ff of the fleet to end: one rollout promotes at a time"; waiting != want {
		t.Errorf("canary at 1m: %q, want %q", waiting, want)
	}
	promotes := f.callsOf("promote")
	if len(promotes) == 0 || promotes[0].At.Sub(start) < 3*time.Minute {
		t.Fatalf("first promotion %v after the start, want it once the earlier rollout ended (3m)", promotes)
	}
}

// TestFleetAdoptsWhatAnEarlierCoordinatorLeft: a coordinator that starts afresh (the earlier one
// terminated while a canary baked) takes the fleet's running rollout as its own, so the next
// commit waits for it instead of promoting beside it, and the last success, so an older commit
// does not ship again.
func TestFleetAdoptsWhatAnEarlierCoordinatorLeft(t *testing.T) {
	running := RolloutID("demo", commitA)
	var start time.Time
	f, st := runFleetWith(t, testPlan(t, "wave", "  onNewCommit: queue\n"), func(f *fakeFleet) {
		start = f.env.Now()
		f.adopt = func(in activities.AdoptInput) (activities.AdoptResult, error) {
			if in.Fleet != "demo" || in.FleetAttr != AttrFleet.GetName() || in.CommitAttr != AttrCommit.GetName() || in.SucceededState != "Succeeded" {
				t.Errorf("adopt %+v", in)
			}
			return activities.AdoptResult{Running: running, RunningCommit: commitA, LastSucceeded: commitB}, nil
		}
		var ex *activities.Executions
		f.env.OnActivity(ex.Execution, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExecutionInput) (activities.ExecutionResult, error) {
			if f.env.Now().Sub(start) < 10*time.Minute {
				return activities.ExecutionResult{Running: true, Status: "Running"}, nil
			}
			return activities.ExecutionResult{Status: "Completed"}, nil
		})
	}, map[time.Duration][]string{time.Second: {commitB, commitC}}, 10*time.Hour)
	promotes := f.callsOf("promote")
	if len(promotes) == 0 {
		t.Fatal("commit C never rolled out")
	}
	for _, p := range promotes {
		if p.Commit != commitC {
			t.Errorf("promoted %s, want only C (A was adopted, B had already succeeded)", p.Commit[:7])
		}
	}
	if first := promotes[0].At.Sub(start); first < 10*time.Minute {
		t.Errorf("C promoted %s in, while the adopted rollout still ran (10m)", first)
	}
	if st.LastSucceeded != commitC || !st.Adopted {
		t.Errorf("state %+v, want C the last success, adopted", st)
	}
}

// TestFleetRecoversTheLastSuccessFromGit: a coordinator that starts afresh when Temporal keeps no
// succeeded rollout (past its retention) takes what the site branches' trailers say the whole
// fleet runs as its last success: that commit, and the ones before it, do not ship again.
func TestFleetRecoversTheLastSuccessFromGit(t *testing.T) {
	f, st := runFleetWith(t, testPlan(t, "wave", ""), func(f *fakeFleet) {
		f.deployed = commitB
		f.older = map[string]bool{commitA: true}
	}, map[time.Duration][]string{time.Second: {commitA}}, time.Hour)
	if st.LastSucceeded != commitB || len(f.callsOf("deployed")) != 1 {
		t.Errorf("last success %q (asked git %d times), want B from the trailers", st.LastSucceeded, len(f.callsOf("deployed")))
	}
	if p := promotedCommits(f); len(p) > 0 {
		t.Errorf("promoted %v: an older commit shipped", p)
	}
}
