package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// Signals of the fleet workflow.
const (
	// SignalCommit submits a commit of the source branch for rollout (a CommitSignal).
	SignalCommit = "commit"
	// signalDone tells the fleet workflow that a rollout it started ended (a DoneSignal).
	signalDone = "rollout-done"
	// signalSupersede tells a rollout that a newer commit replaces it (a CommitSignal).
	signalSupersede = "supersede"
)

// QueryFleet returns a fleet workflow's FleetState.
const QueryFleet = "fleet"

// FleetID is the workflow ID of a fleet's coordinator.
func FleetID(fleet string) string { return "fleet/" + fleet }

// CommitSignal carries a commit hash.
type CommitSignal struct {
	Commit string
	// Trigger says what submitted the commit (nil from releases before it was recorded).
	Trigger *rollout.Trigger `json:",omitempty"`
}

// DoneSignal says which rollout ended, and whether it succeeded.
type DoneSignal struct {
	Rollout   string
	Succeeded bool `json:",omitempty"`
}

// FleetInput configures a fleet's coordinator; State carries it across continue-as-new.
type FleetInput struct {
	Fleet        string
	SourceBranch string
	// Poll, when positive, makes the workflow read the source branch's head this often and
	// submit new heads itself (for repos without push events).
	Poll  time.Duration
	State FleetState
}

// FleetState is what the coordinator knows: the rollout promoting now and the commits
// waiting for their turn.
type FleetState struct {
	Running       string   `json:",omitempty"`
	RunningCommit string   `json:",omitempty"`
	Queue         []string `json:",omitempty"`
	// Superseded lists commits replaced by a newer one before they started.
	Superseded []string `json:",omitempty"`
	// Seen lists the latest commits taken in (queued, started or superseded), so a redelivered
	// push event changes nothing.
	Seen     []string `json:",omitempty"`
	LastHead string   `json:",omitempty"`
	// Superseding is true once the running rollout was asked to stop for a newer commit.
	Superseding bool `json:",omitempty"`
	// LastSucceeded is the commit of the last rollout that succeeded: it, and every commit
	// before it, are never rolled out again by a late or replayed push.
	LastSucceeded string `json:",omitempty"`
	// Collided lists commits not rolled out because their rollout ID belongs to another commit
	// (the same first 12 hex digits): roll out a newer commit instead.
	Collided []string `json:",omitempty"`
	// Triggers says what submitted each queued commit, for its rollout's report.
	Triggers map[string]rollout.Trigger `json:",omitempty"`
	// Refused lists the latest commits never rolled out, and why: not on the source branch.
	Refused []RefusedCommit `json:",omitempty"`
	// Adopted is true once this coordinator took over what an earlier one left (versionFleetAdopt):
	// a rollout still running, the last success.
	Adopted bool `json:",omitempty"`
}

// RefusedCommit is a commit the fleet refused to roll out, and why.
type RefusedCommit struct {
	Commit string
	Reason string
}

// The fleet workflow continues as new when its history passes historyLimit events or it has
// handled maxRounds signals and polls, whichever comes first, so its history stays small.
var (
	historyLimit = 2000
	maxRounds    = 500
)

type fleetRun struct {
	in FleetInput
	st FleetState
	// watch is the version of the rollout watch (versionFleetWatch): from 1 on, the
	// coordinator notices a rollout that closed without its done signal.
	watch workflow.Version
	// child closes when the running rollout does, however it ends; nil after a
	// continue-as-new, when watchTimer asks Temporal instead.
	child      workflow.ChildWorkflowFuture
	watchTimer workflow.Future
}

// versionFleetWatch guards the watch of the running rollout (a change after histories were
// recorded; see docs/workflows.md).
const versionFleetWatch = "fleet-watch-rollout"

// watchInterval is how often a coordinator without the running rollout's child future (after
// continue-as-new) asks Temporal whether that rollout still runs.
const watchInterval = time.Minute

// Fleet coordinates the rollouts of one fleet so that exactly one promotes at a time. Commits
// arrive as SignalCommit (from push events, `fleetwave start`, or its own polling); each new
// commit's plan says what happens to a rollout in progress: supersede (the running rollout
// stops at its next safe point and the newest commit goes next; commits in between are
// skipped) or queue (every commit waits its turn, in order). Rollouts run as abandoned child
// workflows with IDs RolloutID, so a commit is rolled out at most once, and report back with a
// done signal when they end.
func Fleet(ctx workflow.Context, in FleetInput) error {
	f := &fleetRun{in: in, st: in.State}
	if err := workflow.SetQueryHandler(ctx, QueryFleet, func() (FleetState, error) { return f.st, nil }); err != nil {
		return err
	}
	f.watch = workflow.GetVersion(ctx, versionFleetWatch, workflow.DefaultVersion, 1)
	if !f.st.Adopted && workflow.GetVersion(ctx, versionFleetAdopt, workflow.DefaultVersion, 1) >= 1 {
		f.adopt(ctx)
	}
	commits := workflow.GetSignalChannel(ctx, SignalCommit)
	done := workflow.GetSignalChannel(ctx, signalDone)
	var poll workflow.Future
	if in.Poll > 0 && f.st.LastHead == "" {
		f.poll(ctx)
	}
	for round := 1; ; round++ {
		workflow.SetCurrentDetails(ctx, f.details())
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(commits, func(c workflow.ReceiveChannel, _ bool) {
			var s CommitSignal
			c.Receive(ctx, &s)
			f.submit(ctx, s.Commit, s.Trigger)
		})
		sel.AddReceive(done, func(c workflow.ReceiveChannel, _ bool) {
			var d DoneSignal
			c.Receive(ctx, &d)
			f.ended(d.Rollout, d.Succeeded)
		})
		f.addWatch(ctx, sel)
		if in.Poll > 0 {
			if poll == nil {
				poll = workflow.NewTimerWithOptions(ctx, in.Poll, workflow.TimerOptions{Summary: "poll " + in.SourceBranch})
			}
			sel.AddFuture(poll, func(workflow.Future) {
				poll = nil
				f.poll(ctx)
			})
		}
		cancelled := false
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { cancelled = true })
		sel.Select(ctx)
		if cancelled {
			return ctx.Err()
		}
		f.dispatch(ctx)

		info := workflow.GetInfo(ctx)
		if round >= maxRounds || info.GetCurrentHistoryLength() > historyLimit || info.GetContinueAsNewSuggested() {
			// Take in what arrived meanwhile, so no signal is lost across the new run.
			for {
				var s CommitSignal
				if !commits.ReceiveAsync(&s) {
					break
				}
				f.submit(ctx, s.Commit, s.Trigger)
			}
			for {
				var d DoneSignal
				if !done.ReceiveAsync(&d) {
					break
				}
				f.ended(d.Rollout, d.Succeeded)
			}
			f.dispatch(ctx)
			next := f.in
			next.State = f.st
			return workflow.NewContinueAsNewError(ctx, Fleet, next)
		}
	}
}

// versionFleetAdopt guards a coordinator that starts afresh adopting the fleet's running rollout
// and its last success from Temporal's visibility store.
const versionFleetAdopt = "fleet-adopt"

// adopt takes over what an earlier coordinator of the fleet left, when this one starts afresh
// (the earlier was terminated, reset, or its history lost): the oldest rollout still running
// becomes the running one (its done signal comes here, and the watch notices if it closes
// without one), so no second rollout starts beside it; the last success keeps older commits
// from shipping again. A rollout of the fleet that starts anyway (by hand) waits for the
// earlier one itself (GateAlone). Temporal not answering leaves the state as it was: the
// rollouts' own gate still keeps them apart.
func (f *fleetRun) adopt(ctx workflow.Context) {
	f.st.Adopted = true
	var ex *activities.Executions
	var res activities.AdoptResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		Summary:             "adopt the running rollout and last success of fleet " + f.in.Fleet,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 10, MaximumInterval: 30 * time.Second},
	}), ex.Adopt, activities.AdoptInput{Fleet: f.in.Fleet, FleetAttr: AttrFleet.GetName(), CommitAttr: AttrCommit.GetName(),
		StateAttr: AttrState.GetName(), SucceededState: string(rollout.StateSucceeded)}).Get(ctx, &res)
	if err != nil {
		workflow.GetLogger(ctx).Error("cannot adopt what an earlier coordinator left", "error", err)
		return
	}
	if res.Running != "" && f.st.Running == "" {
		workflow.GetLogger(ctx).Info("adopted a running rollout", "rollout", res.Running, "revision", res.RunningCommit)
		f.st.Running, f.st.RunningCommit = res.Running, res.RunningCommit
	}
	if f.st.LastSucceeded == "" {
		f.st.LastSucceeded = res.LastSucceeded
	}
	if f.st.LastSucceeded == "" && workflow.GetVersion(ctx, versionFleetAdoptTrailers, workflow.DefaultVersion, 1) >= 1 {
		// Nothing succeeded within Temporal's retention: what the whole fleet runs, by the
		// promotions' trailers, is the last success.
		var git *activities.Git
		var deployed activities.DeployedResult
		if err := workflow.ExecuteActivity(gitOptions(ctx, "read what the fleet runs", gitRetries), git.Deployed).Get(ctx, &deployed); err != nil {
			workflow.GetLogger(ctx).Warn("cannot read what the fleet runs", "error", err)
			return
		}
		f.st.LastSucceeded = deployed.Commit
	}
}

// versionFleetAdoptTrailers guards the adoption reading the last success from the site
// branches' trailers when Temporal has none.
const versionFleetAdoptTrailers = "fleet-adopt-trailers"

// ended frees the fleet when id is the running rollout; succeeded says it rolled out its
// commit.
func (f *fleetRun) ended(id string, succeeded bool) {
	if id != "" && id == f.st.Running {
		if succeeded {
			f.st.LastSucceeded = f.st.RunningCommit
		}
		f.st.Running, f.st.RunningCommit, f.st.Superseding = "", "", false
		f.child, f.watchTimer = nil, nil
	}
}

// addWatch makes sel wake up when the running rollout closes without its done signal: it was
// terminated, timed out or reset from outside, and will never send one. The child future
// tells at once; after a continue-as-new, which loses it, a timer asks Temporal every
// watchInterval. Either way the fleet goes on with its queue within a minute.
func (f *fleetRun) addWatch(ctx workflow.Context, sel workflow.Selector) {
	if f.watch < 1 || f.st.Running == "" {
		return
	}
	id := f.st.Running
	if f.child != nil {
		sel.AddFuture(f.child, func(fut workflow.Future) {
			err := fut.Get(ctx, nil)
			f.child = nil
			if id == f.st.Running {
				workflow.GetLogger(ctx).Warn("rollout closed without telling the fleet", "rollout", id, "error", err)
				f.ended(id, false)
			}
		})
		return
	}
	if f.watchTimer == nil {
		f.watchTimer = workflow.NewTimerWithOptions(ctx, watchInterval, workflow.TimerOptions{Summary: "check that " + id + " still runs"})
	}
	sel.AddFuture(f.watchTimer, func(workflow.Future) {
		f.watchTimer = nil
		var res activities.ExecutionResult
		var ex *activities.Executions
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 30 * time.Second,
			Summary:             "is " + id + " still running?",
			RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
		}), ex.Execution, activities.ExecutionInput{WorkflowID: id}).Get(ctx, &res)
		if err != nil {
			// Temporal did not answer: ask again at the next tick.
			workflow.GetLogger(ctx).Warn("cannot tell whether the rollout still runs", "rollout", id, "error", err)
			return
		}
		if !res.Running && id == f.st.Running {
			workflow.GetLogger(ctx).Warn("rollout closed without telling the fleet", "rollout", id, "status", res.Status)
			f.ended(id, false)
		}
	})
}

// poll reads the source branch and submits a new head.
func (f *fleetRun) poll(ctx workflow.Context) {
	var head activities.HeadResult
	var git *activities.Git
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		Summary:             "read the head of " + f.in.SourceBranch,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	}), git.Head, activities.HeadInput{Branch: f.in.SourceBranch}).Get(ctx, &head)
	if err != nil {
		// The next poll tries again; a failed poll must not stop the coordinator.
		workflow.GetLogger(ctx).Warn("poll failed", "branch", f.in.SourceBranch, "error", err)
		return
	}
	if head.Commit != f.st.LastHead {
		f.st.LastHead = head.Commit
		f.submit(ctx, head.Commit, &rollout.Trigger{Via: rollout.TriggerPoll})
	}
}

// submit takes a commit in, by the onNewCommit policy of the commit's own plan. A commit seen
// before, or older than one the fleet already has (a late push event), changes nothing.
func (f *fleetRun) submit(ctx workflow.Context, commit string, trigger *rollout.Trigger) {
	if commit == "" || slices.Contains(f.st.Seen, commit) {
		return
	}
	var in activities.InspectResult
	var git *activities.Git
	err := workflow.ExecuteActivity(gitOptions(ctx, "inspect "+rollout.Short(commit), gitRetriesLong), git.Inspect,
		activities.InspectInput{Commit: commit, Known: append([]string{f.st.RunningCommit}, f.st.Queue...), Done: f.st.LastSucceeded}).Get(ctx, &in)
	if err != nil {
		workflow.GetLogger(ctx).Warn("commit refused", "revision", commit, "error", err)
		return
	}
	if in.Refused != "" {
		workflow.GetLogger(ctx).Warn("commit refused", "revision", commit, "reason", in.Refused)
		f.st.Refused = append(f.st.Refused, RefusedCommit{Commit: commit, Reason: in.Refused})
		if len(f.st.Refused) > 50 {
			f.st.Refused = f.st.Refused[len(f.st.Refused)-50:]
		}
		return // not Seen: once merged (fast-forward, the same commit), it is rolled out
	}
	f.st.Seen = append(f.st.Seen, commit)
	if len(f.st.Seen) > 200 {
		f.st.Seen = f.st.Seen[len(f.st.Seen)-200:]
	}
	if in.Stale != "" {
		workflow.GetLogger(ctx).Info("older than a commit in hand or already rolled out: ignored", "revision", commit, "newer", in.Stale)
		return
	}
	if trigger != nil {
		if f.st.Triggers == nil {
			f.st.Triggers = map[string]rollout.Trigger{}
		}
		f.st.Triggers[commit] = *trigger
	}
	if in.OnNewCommit == rollout.OnNewCommitQueue {
		f.st.Queue = append(f.st.Queue, commit)
		return
	}
	for _, c := range f.st.Queue {
		delete(f.st.Triggers, c)
	}
	f.st.Superseded = append(f.st.Superseded, f.st.Queue...)
	if len(f.st.Superseded) > 50 {
		f.st.Superseded = f.st.Superseded[len(f.st.Superseded)-50:]
	}
	f.st.Queue = []string{commit}
	if f.st.Running != "" && !f.st.Superseding {
		err := workflow.SignalExternalWorkflow(ctx, f.st.Running, "", signalSupersede, CommitSignal{Commit: commit}).Get(ctx, nil)
		if err != nil {
			// The rollout ended meanwhile; its done signal is on its way.
			workflow.GetLogger(ctx).Info("cannot supersede", "rollout", f.st.Running, "error", err)
		}
		f.st.Superseding = true
	}
}

// dispatch starts the next commit's rollout when none is running.
func (f *fleetRun) dispatch(ctx workflow.Context) {
	for f.st.Running == "" && len(f.st.Queue) > 0 {
		commit := f.st.Queue[0]
		f.st.Queue = f.st.Queue[1:]
		var trigger *rollout.Trigger
		if t, ok := f.st.Triggers[commit]; ok {
			trigger = &t
			delete(f.st.Triggers, commit)
		}
		// Before versionRolloutID12, rollout IDs held 7 hex digits of the commit.
		v12 := workflow.GetVersion(ctx, versionRolloutID12, workflow.DefaultVersion, 1) >= 1
		id := RolloutID(f.in.Fleet, commit)
		if !v12 {
			id = legacyRolloutID(f.in.Fleet, commit)
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            id,
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
			StaticSummary:         fmt.Sprintf("roll out %s to fleet %s", rollout.Short(commit), f.in.Fleet),
			TypedSearchAttributes: temporal.NewSearchAttributes(
				AttrFleet.ValueSet(f.in.Fleet), AttrCommit.ValueSet(commit), AttrState.ValueSet(string(rollout.StatePending))),
		})
		child := workflow.ExecuteChildWorkflow(cctx, Rollout, RolloutInput{Fleet: f.in.Fleet, Commit: commit,
			Coordinator: workflow.GetInfo(ctx).WorkflowExecution.ID, Trigger: trigger})
		var started workflow.Execution
		err := child.GetChildWorkflowExecution().Get(ctx, &started)
		var dup *temporal.ChildWorkflowExecutionAlreadyStartedError
		switch {
		case errors.As(err, &dup):
			// Rolled out before (a redelivered push, a restart): nothing to do, unless the ID
			// belongs to another commit that shares its first digits.
			if v12 {
				f.checkCollision(ctx, id, commit)
			}
			continue
		case err != nil:
			workflow.GetLogger(ctx).Error("cannot start rollout", "rollout", id, "error", err)
			continue
		}
		f.st.Running, f.st.RunningCommit, f.st.Superseding = id, commit, false
		f.child, f.watchTimer = child, nil
	}
}

// versionRolloutID12 guards rollout IDs of 12 hex digits (RolloutID) instead of 7.
const versionRolloutID12 = "rollout-id-12"

// checkCollision reads the commit of the existing rollout id: when it is not commit, two
// commits share the ID's digits, and commit cannot roll out; the fleet says so in Collided and
// its log instead of skipping it silently.
func (f *fleetRun) checkCollision(ctx workflow.Context, id, commit string) {
	var ex *activities.Executions
	var res activities.ExecutionResult
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 5}})
	if err := workflow.ExecuteActivity(actx, ex.Execution, activities.ExecutionInput{WorkflowID: id, Attribute: AttrCommit.GetName()}).Get(ctx, &res); err != nil {
		workflow.GetLogger(ctx).Warn("cannot check the commit of an existing rollout", "rollout", id, "error", err)
		return
	}
	if res.Value != "" && res.Value != commit {
		workflow.GetLogger(ctx).Error("rollout ID taken by another commit: not rolled out", "rollout", id, "revision", commit, "taken by", res.Value)
		f.st.Collided = append(f.st.Collided, commit)
	}
}

func (f *fleetRun) details() string {
	switch {
	case f.st.Running == "":
		return "Idle: no rollout in progress"
	case len(f.st.Queue) > 0:
		return fmt.Sprintf("Rolling out %s; next: %s", rollout.Short(f.st.RunningCommit), rollout.Short(f.st.Queue[0]))
	}
	return "Rolling out " + rollout.Short(f.st.RunningCommit)
}
