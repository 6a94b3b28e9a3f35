package workflows

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
)

// WaveInput is what a wave child workflow needs: its part of the plan and its initial status.
type WaveInput struct {
	Rollout string
	Commit  string
	Wave    rollout.Wave
	// Sites are the wave's members with their plan settings, in Wave.Sites order.
	Sites  []rollout.Site
	Health rollout.Health
	Status rollout.WaveStatus
	// Automatic is the plan's rollback.automatic: whether sites degraded within the failure
	// budget are reverted.
	Automatic bool `json:",omitempty"`
	// Resume is set in the next run of a wave that continued as new; Status is then the
	// wave's status at that point (WaveStatus.Carry).
	Resume *WaveResume `json:",omitempty"`
}

// WaveResume is what a wave carries across a continue-as-new beside its status: where its
// runbook stood, when its next health round is due, and the detail budget its rounds spent.
type WaveResume struct {
	Run         runbook.WaveResume
	Wake        time.Time
	DetailSpent int `json:",omitempty"`
}

// WaveResult is the final status of a wave that succeeded. A failed wave returns an
// ErrTypeWaveFailed application error carrying the status instead.
type WaveResult struct {
	Status rollout.WaveStatus
	// Aborted is true when the rollout stopped the wave at a safe point.
	Aborted bool
}

// ControlSignal carries pause, resume or abort from a rollout to its running wave.
type ControlSignal struct {
	Action runbook.ControlAction
}

// UnmarshalJSON reads the signal, and also the bare string ("pause") that rollouts started
// before ControlSignal sent, so a wave running across the upgrade still obeys them.
func (c *ControlSignal) UnmarshalJSON(data []byte) error {
	var action string
	if json.Unmarshal(data, &action) == nil {
		c.Action = runbook.ControlAction(action)
		return nil
	}
	type plain ControlSignal
	return json.Unmarshal(data, (*plain)(c))
}

// chunk is the most sites one activity call handles, so that no payload of a large wave
// nears Temporal's size limits: a wave of 9,000 sites is waited for and observed in calls of
// 500 sites (run in parallel where the runbook allows); promotions use promoteChunk.
const chunk = 500

// promoteChunk is the most sites one Promote call pushes, under versionPromoteChunk. Each push
// has a cost of its own on a server with 10,000 branches (git advertises them all before it):
// in pushes of 500 sites it was half of a 9,000-site wave's promotion (docs/benchmarks.md). A
// result of 2,500 changes is about 520 KB of JSON, 140 KB once the data converter compressed it,
// far inside Temporal's 2 MiB payload limit.
const promoteChunk = 2500

// versionPromoteChunk guards promoting in chunks of promoteChunk sites instead of chunk.
const versionPromoteChunk = "promote-chunk-2500"

// Wave runs the runbook of one wave (runbook.Wave.Next): it promotes the wave in batches of
// MaxParallel, waits for every batch to converge, then bakes, checking every site each
// Health.Interval until Bake has passed. Sites that degrade within the wave's failure budget are
// reverted alone; the first past it ends the wave with ErrTypeWaveFailed, and the parent reverts
// by the plan's rollback scope. The workflow only runs the steps and effects Next returns and feeds
// back what happened.
func Wave(ctx workflow.Context, in WaveInput) (WaveResult, error) {
	d := &waveDriver{in: in, site: rollout.SitesByName(in.Sites)}
	d.run = runbook.NewWave(in.Rollout, in.Commit, in.Wave, in.Health, in.Automatic, in.Status)
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (rollout.WaveStatus, error) {
		return d.run.Status, nil
	}); err != nil {
		return WaveResult{}, err
	}
	d.signals = workflow.GetSignalChannel(ctx, signalControl)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var s ControlSignal
			d.signals.Receive(ctx, &s)
			d.controls = append(d.controls, s.Action)
		}
	})
	d.versions(ctx)
	if in.Resume != nil {
		// Continued as new: go on sleeping until the next health round.
		d.run = runbook.ResumeWave(in.Rollout, in.Commit, in.Wave, in.Health, in.Automatic, in.Status, in.Resume.Run)
		d.detailSpent = in.Resume.DetailSpent
		d.flags(ctx)
		d.step = runbook.SleepUntil{At: in.Resume.Wake}
	} else {
		d.flags(ctx)
		d.next(ctx, runbook.WaveStarted{At: workflow.Now(ctx)})
	}
	for {
		d.applyControls(ctx)
		if c, ok := d.step.(runbook.FinishWave); ok {
			d.delivered(ctx)
			return d.finish(ctx, c)
		}
		ev, err := d.runStep(ctx)
		switch {
		case err != nil:
			return WaveResult{}, err
		case ev == nil:
			continue // a control came first: the runbook decides what now
		}
		if err := ctx.Err(); err != nil {
			return WaveResult{}, err
		}
		d.next(ctx, ev)
	}
}

// versions reads the wave's versions once, in the order the recorded histories have them.
func (d *waveDriver) versions(ctx workflow.Context) {
	d.localRounds = workflow.GetVersion(ctx, versionLocalHealthRounds, workflow.DefaultVersion, 1) >= 1
	d.cancelOnAbort = workflow.GetVersion(ctx, versionAbortCancelsWait, workflow.DefaultVersion, 1) >= 1
	d.reporting = runbook.ReportNone
	if workflow.GetVersion(ctx, versionWaveProgress, workflow.DefaultVersion, 1) >= 1 {
		if p := workflow.GetInfo(ctx).ParentWorkflowExecution; p != nil {
			d.parent = p.ID
			d.pipelined = workflow.GetVersion(ctx, versionProgressPipelined, workflow.DefaultVersion, 1) >= 1
			d.reporting = runbook.ReportEach
			if workflow.GetVersion(ctx, versionProgressCoalesced, workflow.DefaultVersion, 1) >= 1 {
				d.reporting = runbook.ReportCoalesced
			}
		}
	}
	// Before versionAfresh, an Unknown round did not break a streak of failed rounds.
	d.afresh = workflow.GetVersion(ctx, versionAfresh, workflow.DefaultVersion, 1) >= 1
	// Before versionEvidenceGates, a wave ended at BakeUntil whatever its sites' last rounds
	// said, and observed nothing outside its bake.
	d.evidence = workflow.GetVersion(ctx, versionEvidenceGates, workflow.DefaultVersion, 1) >= 1
	// Before versionPromoteMissing, a site branch that did not exist failed the whole push.
	d.skipMissing = workflow.GetVersion(ctx, versionPromoteMissing, workflow.DefaultVersion, 1) >= 1
	// Before versionOfflineDefer, a plan's health.offline did not exist. Only a wave that can
	// defer asks, so that every other wave's history stays as it was.
	if d.evidence && d.in.Health.Defers() {
		d.offline = workflow.GetVersion(ctx, versionOfflineDefer, workflow.DefaultVersion, 1) >= 1
	}
}

// versionPromoteMissing guards a missing site branch counting as that one site's failure
// (against the wave's failure budget) instead of failing the push of its whole batch.
const versionPromoteMissing = "promote-missing-branch"

// flags gives the runbook what the versions say, and the status its rollout was told last.
func (d *waveDriver) flags(ctx workflow.Context) {
	d.run.Afresh, d.run.Evidence, d.run.Reporting, d.run.Offline = d.afresh, d.evidence, d.reporting, d.offline
	d.run.Reported, d.run.ReportedAt = d.in.Status, workflow.Now(ctx)
}

// applyControls feeds the controls that arrived to the runbook: they take effect between
// steps, so a step in flight (a push, a revert) always finishes first.
func (d *waveDriver) applyControls(ctx workflow.Context) {
	for len(d.controls) > 0 {
		action := d.controls[0]
		d.controls = d.controls[1:]
		d.next(ctx, runbook.WaveControl{At: workflow.Now(ctx), Action: action})
	}
}

// runStep runs the step in progress and returns its event; nil when a control arrived first
// (the runbook decides whether the step goes on). The error ends the workflow: its
// cancellation, or a continue-as-new.
func (d *waveDriver) runStep(ctx workflow.Context) (runbook.WaveEvent, error) {
	switch c := d.step.(type) {
	case runbook.PromoteSites:
		return d.promote(ctx, c), nil
	case runbook.AwaitConvergence:
		return d.converge(ctx, c), nil
	case runbook.ObserveHealth:
		return d.observe(ctx, c), nil
	case runbook.ProbeSites:
		return d.probe(ctx, c), nil
	case runbook.RevertSites:
		return d.revert(ctx, c), nil
	case runbook.SleepUntil:
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Baking wave %s until %s: next health round at %s, every %s",
			d.in.Wave.Name, d.run.Status.BakeUntil.UTC().Format(time.RFC3339), c.At.UTC().Format(time.RFC3339), d.in.Health.Interval))
		return d.bake(ctx, c.At, "next health round")
	case runbook.HoldPaused:
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Paused in wave %s: waiting for resume", d.in.Wave.Name))
		if c.Until.IsZero() {
			return nil, workflow.Await(ctx, func() bool { return len(d.controls) > 0 })
		}
		// Paused with converged sites: they are observed every interval meanwhile, and a
		// long pause continues as new like a long bake.
		return d.bake(ctx, c.Until, "next health round (paused)")
	}
	panic(fmt.Sprintf("wave %s: no step to run (%T)", d.in.Wave.Name, d.step))
}

// bake sleeps until the next health round at wake (a WaveTick then), unless a control arrives
// first (nil), or the history is long enough to continue as new.
func (d *waveDriver) bake(ctx workflow.Context, wake time.Time, summary string) (runbook.WaveEvent, error) {
	if d.continueAsNew(ctx) {
		return nil, d.carryOn(ctx, wake)
	}
	if len(d.controls) > 0 {
		return nil, nil
	}
	control, err := d.sleep(ctx, wake, summary)
	if err != nil || control {
		return nil, err
	}
	return runbook.WaveTick{At: workflow.Now(ctx)}, nil
}

// versionLocalHealthRounds guards health rounds run as local activities that report only
// what changed (instead of activities reporting every site's observation), so a wave's
// history stays bounded however many sites and rounds it has.
const versionLocalHealthRounds = "health-round-local"

// roundDetail is how many bytes of healthy sites' measurements a health round may add to the
// history, and waveDetail how many all the wave's rounds may add, so that a small wave's status
// shows fresh measurements while a large or long-baking wave's history stays bounded (past
// waveDetail, a healthy site's status keeps its last reported measurements).
const (
	roundDetail = 16 << 10
	waveDetail  = 1 << 20
)

// waveDriver runs a wave's commands.
type waveDriver struct {
	in  WaveInput
	run runbook.Wave
	// site returns a site's plan settings.
	site func(name string) rollout.Site
	// step is the step in progress: the last one the runbook returned.
	step runbook.WaveStep
	// controls are the controls received and not yet fed to the runbook.
	controls []runbook.ControlAction
	signals  workflow.ReceiveChannel
	// afresh, evidence and reporting are what the versions say (runbook.Wave's fields).
	afresh, evidence bool
	reporting        runbook.Reporting
	// skipMissing: a missing site branch is its site's failure, not the batch's (versioned).
	skipMissing bool
	// offline: the wave defers offline sites (health.offline, versioned).
	offline bool
	// localRounds: health rounds run as local activities reporting changes (versioned).
	localRounds bool
	// cancelOnAbort: an abort cancels a convergence wait in flight (versioned).
	cancelOnAbort bool
	// detailSpent is the budget of healthy measurements the wave's rounds were given so far.
	detailSpent int
	// parent is the rollout's workflow ID, to report the wave's changes to; "" for a wave
	// recorded before versionWaveProgress, or started on its own.
	parent string
	// pipelined: a progress signal is delivered while the next command runs (versioned);
	// pending is the one not known delivered yet.
	pipelined bool
	pending   workflow.Future
}

// versionAbortCancelsWait guards an abort cancelling the convergence wait in flight.
const versionAbortCancelsWait = "abort-cancels-convergence"

// versionAfresh guards a site judged afresh after an Unknown round (runbook.Wave.Afresh).
const versionAfresh = "health-afresh-after-unknown"

// versionEvidenceGates guards the gates that decide on evidence (runbook.Wave.Evidence): a
// wave passes only once every site passed its last round, and health rounds go on in every
// wait of the wave.
const versionEvidenceGates = "wave-gate-evidence"

// versionWaveContinueAsNew guards a wave continuing as new during its bake.
const versionWaveContinueAsNew = "wave-continue-as-new"

// waveEvents is the history length at which a baking wave continues as new even when Temporal
// does not suggest it (by default Temporal suggests it at 4,096 events or 4 MB), far below the
// 51,200 events at which Temporal terminates a workflow.
const waveEvents = 8000

// historyLong reports whether a wave's history is long enough to continue as new; a variable
// so that tests, whose environment keeps no history, can say when.
var historyLong = longHistory

// longHistory is historyLong's rule: Temporal suggests continuing as new, or waveEvents.
func longHistory(info *workflow.Info) bool {
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= waveEvents
}

// continueAsNew reports whether the baking wave should continue as new now: its history is
// long, and no control waits to be applied (it drains the control signals first, so none is
// lost with the run).
func (d *waveDriver) continueAsNew(ctx workflow.Context) bool {
	if !historyLong(workflow.GetInfo(ctx)) {
		return false
	}
	for {
		var s ControlSignal
		if !d.signals.ReceiveAsync(&s) {
			break
		}
		d.controls = append(d.controls, s.Action)
	}
	if len(d.controls) > 0 {
		return false
	}
	// Before versionWaveContinueAsNew, a wave baked in one run however long its history.
	return workflow.GetVersion(ctx, versionWaveContinueAsNew, workflow.DefaultVersion, 1) >= 1
}

// carryOn continues the wave as new, to wake at wake: the rollout is told of every change
// first (the next run starts from this status), then the next run gets the status and where
// the runbook stands.
func (d *waveDriver) carryOn(ctx workflow.Context, wake time.Time) error {
	var effects []runbook.WaveEffect
	d.run, effects = d.run.Flush(workflow.Now(ctx))
	d.effects(ctx, effects)
	d.delivered(ctx)
	next := d.in
	next.Status = d.run.Status.Carry()
	next.Resume = &WaveResume{Run: d.run.Resume(), Wake: wake, DetailSpent: d.detailSpent}
	workflow.GetLogger(ctx).Info("wave continues as new", "rollout", d.in.Rollout, "wave", d.in.Wave.Name,
		"events", workflow.GetInfo(ctx).GetCurrentHistoryLength())
	return workflow.NewContinueAsNewError(ctx, Wave, next)
}

// sleep waits on a timer until at, or until a control arrives (control is then true).
func (d *waveDriver) sleep(ctx workflow.Context, at time.Time, summary string) (control bool, err error) {
	wait := at.Sub(workflow.Now(ctx))
	if wait <= 0 {
		return false, nil
	}
	return workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{Timeout: wait, TimerOptions: workflow.TimerOptions{Summary: summary}},
		func() bool { return len(d.controls) > 0 })
}

// versionWaveProgress guards the wave's progress signals to its rollout (signalWaveProgress).
const versionWaveProgress = "wave-progress-signals"

// next feeds an event to the runbook, runs the effects it returns (reports to the rollout, so
// that the rollout's status query shows the wave live) and keeps the step it returns, if any,
// as the one to run next.
func (d *waveDriver) next(ctx workflow.Context, e runbook.WaveEvent) {
	var step runbook.WaveStep
	var effects []runbook.WaveEffect
	d.run, step, effects = d.run.Next(e)
	if step != nil {
		d.step = step
	}
	d.effects(ctx, effects)
}

// effects runs the runbook's effects, in order.
func (d *waveDriver) effects(ctx workflow.Context, effects []runbook.WaveEffect) {
	for _, c := range effects {
		if r, ok := c.(runbook.Report); ok {
			d.report(ctx, r.Change)
		}
	}
}

// versionProgressCoalesced guards coalescing the changes a wave reports to its rollout
// (runbook.ReportCoalesced, every runbook.ProgressEvery for what decides nothing).
const versionProgressCoalesced = "wave-progress-coalesced"

// report signals a change of the wave to its rollout, in parts of at most progressSites sites
// (a large wave's first promotion changes thousands at once), one after the other, so the
// rollout applies them in order. Since versionProgressPipelined the last part is not waited
// for: the wave's next command (a push, a wait) runs while it is delivered, and the next
// report, or the wave's end, waits for it first (delivered).
func (d *waveDriver) report(ctx workflow.Context, c rollout.WaveChange) {
	d.delivered(ctx)
	parts := split(c.Sites, progressSites)
	if len(parts) == 0 {
		parts = [][]rollout.SiteStatus{nil} // the wave's own state changed
	}
	for i, sites := range parts {
		part := c
		part.Sites = sites
		sent := workflow.SignalExternalWorkflow(ctx, d.parent, "", signalWaveProgress, part)
		if d.pipelined && i == len(parts)-1 {
			d.pending = sent
			return
		}
		if err := sent.Get(ctx, nil); err != nil {
			d.reportFailed(ctx, err)
			return
		}
	}
}

// delivered waits until the last progress signal reached the rollout.
func (d *waveDriver) delivered(ctx workflow.Context) {
	if d.pending == nil {
		return
	}
	if err := d.pending.Get(ctx, nil); err != nil {
		d.reportFailed(ctx, err)
	}
	d.pending = nil
}

// reportFailed logs a progress signal the rollout did not take: it is gone (terminated), so
// nobody is to be told, and the wave goes on with its sites.
func (d *waveDriver) reportFailed(ctx workflow.Context, err error) {
	workflow.GetLogger(ctx).Warn("cannot report the wave's progress to its rollout", "rollout", d.in.Rollout, "wave", d.in.Wave.Name, "error", err)
}

// versionProgressPipelined guards progress signals delivered while the wave's next command
// runs, instead of before it: every signal costs two hops through Temporal (the signal, then
// the wave's task that learns it arrived), which a zero-bake wave paid three times in a row.
const versionProgressPipelined = "wave-progress-pipelined"

// progressSites is the most sites one progress signal carries.
const progressSites = 1000

// promote writes the batch's promotion commits, promoteChunk sites at a time (one push each).
func (d *waveDriver) promote(ctx workflow.Context, c runbook.PromoteSites) runbook.WaveEvent {
	short := rollout.Short(d.in.Commit)
	label := fmt.Sprintf("%s to %s", rollout.SitesLabel(c.Sites), short)
	if n := len(d.run.Batches); n > 1 {
		label += fmt.Sprintf(" (batch %d/%d)", c.Batch+1, n)
	}
	workflow.SetCurrentDetails(ctx, "Promoting "+label)
	ev := runbook.BatchPromoted{}
	cancellable := workflow.GetVersion(ctx, versionAbortCancelsPush, workflow.DefaultVersion, 1) >= 1
	size := chunk
	if workflow.GetVersion(ctx, versionPromoteChunk, workflow.DefaultVersion, 1) >= 1 {
		size = promoteChunk
	}
	for _, part := range split(c.Sites, size) {
		targets := make([]activities.Target, len(part))
		for i, name := range part {
			targets[i] = activities.Target{Site: name, Branch: d.run.Site(name).Branch}
		}
		in := activities.PromoteInput{Rollout: d.in.Rollout, Wave: d.in.Wave.Name, Source: d.in.Commit, Targets: targets, SkipMissing: d.skipMissing}
		summary := "promote " + rollout.SitesLabel(part) + " to " + short
		var promoted activities.ChangeResult
		var err error
		if cancellable {
			promoted, ev.Cancelled, err = d.promoteCancellable(ctx, in, summary)
		} else {
			var git *activities.Git
			err = workflow.ExecuteActivity(gitOptions(ctx, summary, gitRetries), git.Promote, in).Get(ctx, &promoted)
		}
		if err != nil {
			// The parts pushed before stay promoted: the event says so, and the wave fails.
			ev.At = workflow.Now(ctx)
			ev.Failure = fmt.Sprintf("promote %s in wave %s: %s", rollout.SitesLabel(part), d.in.Wave.Name, errorMessage(err))
			return ev
		}
		for _, ch := range promoted.Changes {
			ev.Sites = append(ev.Sites, runbook.Promotion{Site: ch.Site, Commit: ch.Commit, Previous: ch.Previous, Ours: ch.RolloutCommit() != "", Problem: ch.Problem})
		}
		if ev.Cancelled {
			break // the parts after it are not pushed
		}
	}
	ev.At = workflow.Now(ctx)
	return ev
}

// versionAbortCancelsPush guards an abort (or rollback) cancelling the push in flight.
const versionAbortCancelsPush = "abort-cancels-push"

// promoteCancellable pushes one part of a batch; an operator's abort that arrives meanwhile
// cancels the activity: at once when it waits between attempts (a git server down, 30 minutes
// of retries), after the push under way when one is (Git.Promote never cuts a push short). It
// waits for the activity to stop, and when it did not complete, reads from git which branches
// got the promotion all the same (a push that landed but whose answer failed), so that the
// status names every promoted site. cancelled reports that the abort cut the promotion short.
func (d *waveDriver) promoteCancellable(ctx workflow.Context, in activities.PromoteInput, summary string) (res activities.ChangeResult, cancelled bool, err error) {
	var git *activities.Git
	actx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	opts := workflow.GetActivityOptions(gitOptions(actx, summary, gitRetries))
	opts.WaitForCancellation = true
	fut := workflow.ExecuteActivity(workflow.WithActivityOptions(actx, opts), git.Promote, in)
	if err := workflow.Await(ctx, func() bool { return fut.IsReady() || slices.Contains(d.controls, runbook.ControlAbort) }); err != nil {
		return res, false, err
	}
	if fut.IsReady() {
		return res, false, fut.Get(ctx, &res)
	}
	cancel()
	if err := fut.Get(ctx, &res); err == nil {
		return res, true, nil // the push under way finished
	}
	res = activities.ChangeResult{}
	err = workflow.ExecuteActivity(gitOptions(ctx, "read what landed of "+summary, gitRetries), git.Landed, in).Get(ctx, &res)
	return res, true, err
}

// converge waits for the sites to apply their commits, in chunks running in parallel. An
// abort that arrives meanwhile cancels the wait (convergence may take convergenceTimeout, ten
// minutes by default): the wave then ends aborted at once.
func (d *waveDriver) converge(ctx workflow.Context, c runbook.AwaitConvergence) runbook.WaveEvent {
	names := make([]string, len(c.Sites))
	for i, e := range c.Sites {
		names[i] = e.Site
	}
	label := fmt.Sprintf("%s to apply %s", rollout.SitesLabel(names), rollout.Short(d.in.Commit))
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Waiting for %s (until %s)", label, c.Deadline.UTC().Format(time.RFC3339)))
	var res runbook.SitesConverged
	var err error
	wait := func(ctx workflow.Context) {
		res, err = waitConvergedOffline(ctx, d.site, c.Sites, c.Deadline, d.in.Health.ConvergenceTimeout, c.Offline, "wait for "+label)
	}
	if d.cancelOnAbort {
		wctx, cancel := workflow.WithCancel(ctx)
		done := false
		workflow.Go(wctx, func(wctx workflow.Context) {
			wait(wctx)
			done = true
		})
		if werr := workflow.Await(ctx, func() bool { return done || slices.Contains(d.controls, runbook.ControlAbort) }); werr != nil {
			cancel()
			return runbook.StepFailed{At: workflow.Now(ctx), Message: errorMessage(werr)}
		}
		if !done {
			cancel()
			_ = workflow.Await(ctx, func() bool { return done })
			return runbook.StepCancelled{At: workflow.Now(ctx)}
		}
		cancel()
	} else {
		wait(ctx)
	}
	if err != nil {
		return runbook.StepFailed{At: workflow.Now(ctx), Message: fmt.Sprintf("wait for %s to converge in wave %s: %s", strings.Join(names, ", "), d.in.Wave.Name, errorMessage(err))}
	}
	res.At = workflow.Now(ctx)
	return res
}

// observe runs one health round over the sites.
func (d *waveDriver) observe(ctx workflow.Context, c runbook.ObserveHealth) runbook.WaveEvent {
	started := workflow.Now(ctx)
	ev := d.round(ctx, c)
	if round, ok := ev.(runbook.HealthObserved); ok {
		round.Started = started
		return round
	}
	return ev
}

// round runs one health round over the sites, as activities or (since versionLocalHealthRounds)
// local activities.
func (d *waveDriver) round(ctx workflow.Context, c runbook.ObserveHealth) runbook.WaveEvent {
	if d.run.Phase == runbook.WaveBake {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Baking wave %s until %s: health round of %s",
			d.in.Wave.Name, d.run.Status.BakeUntil.UTC().Format(time.RFC3339), rollout.Count(len(c.Sites), "site")))
	} else {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Wave %s: health round of %s promoted so far", d.in.Wave.Name, rollout.Count(len(c.Sites), "site")))
	}
	if d.localRounds {
		return d.localRound(ctx, c)
	}
	parts := chunks(c.Sites)
	futures := make([]workflow.Future, len(parts))
	for i, part := range parts {
		in := activities.ObserveInput{Checks: d.in.Health.Checks, Sites: make([]rollout.Site, len(part))}
		for j, name := range part {
			in.Sites[j] = d.site(name)
		}
		var sites *activities.Sites
		futures[i] = workflow.ExecuteActivity(observeOptions(ctx, fmt.Sprintf("check health of wave %s (%s)", d.in.Wave.Name, rollout.SitesLabel(part))), sites.Observe, in)
	}
	ev := runbook.HealthObserved{}
	for _, f := range futures {
		var res activities.ObserveResult
		if err := f.Get(ctx, &res); err != nil {
			return runbook.StepFailed{At: workflow.Now(ctx), Message: fmt.Sprintf("check health of wave %s: %s", d.in.Wave.Name, errorMessage(err))}
		}
		ev.States = append(ev.States, res.States...)
	}
	ev.At = workflow.Now(ctx)
	return ev
}

// localRound runs a health round as local activities, one per chunk of sites in parallel (each
// with its own minute): their input (every site and the commit it should run) stays out of the
// history, and each result lists only the sites that are not healthy, the sites whose last
// status showed a failure (so their recovery shows), and healthy measurements while the wave's
// detail budget lasts. The sites left out were observed healthy at their commit.
func (d *waveDriver) localRound(ctx workflow.Context, c runbook.ObserveHealth) runbook.WaveEvent {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Second,
			MaximumAttempts:    5,
		},
	})
	parts := chunks(c.Sites)
	// The wave's detail budget, shared out between the parts.
	detail := min(roundDetail, max(waveDetail-d.detailSpent, 0)) / max(len(parts), 1)
	futures := make([]workflow.Future, len(parts))
	for i, part := range parts {
		in := activities.HealthRoundInput{Checks: d.in.Health.Checks, Detail: detail,
			Sites: make([]rollout.Site, len(part)), Expect: make([]string, len(part)), Report: make([]bool, len(part))}
		for j, name := range part {
			s := d.run.Site(name)
			in.Sites[j], in.Expect[j] = d.site(name), s.Promotion
			in.Report[j] = s.Failures > 0 || !s.UnknownSince.IsZero() || failing(s.Checks)
		}
		var sites *activities.Sites
		futures[i] = workflow.ExecuteLocalActivity(lctx, sites.HealthRound, in)
	}
	reported := make(map[string]rollout.SiteState)
	for _, f := range futures {
		var res activities.HealthRoundResult
		if err := f.Get(ctx, &res); err != nil {
			return runbook.StepFailed{At: workflow.Now(ctx), Message: fmt.Sprintf("check health of wave %s: %s", d.in.Wave.Name, errorMessage(err))}
		}
		d.detailSpent += res.DetailBytes
		for _, st := range res.States {
			reported[st.Site] = st
		}
	}
	ev := runbook.HealthObserved{At: workflow.Now(ctx), States: make([]rollout.SiteState, len(c.Sites))}
	for i, name := range c.Sites {
		st, ok := reported[name]
		if !ok {
			// Observed healthy at its commit; its last measurements (all passing) stand.
			s := d.run.Site(name)
			st = rollout.SiteState{Site: name, Reachable: true, Ready: true, Revision: rollout.FormatRevision(s.Branch, s.Promotion), ObservedAt: ev.At}
		}
		ev.States[i] = st
	}
	return ev
}

// failing reports whether any of the measurements failed or could not be taken.
func failing(checks []rollout.CheckResult) bool {
	for _, c := range checks {
		if !c.OK || c.Unknown {
			return true
		}
	}
	return false
}

// revert reverts sites degraded within the failure budget and waits for them to apply it.
func (d *waveDriver) revert(ctx workflow.Context, c runbook.RevertSites) runbook.WaveEvent {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Reverting %s in wave %s: %s", rollout.SitesLabel(c.Sites), d.in.Wave.Name, c.Reason))
	targets := make([]activities.Target, len(c.Sites))
	for i, name := range c.Sites {
		targets[i] = activities.Target{Site: name, Branch: d.run.Site(name).Branch}
	}
	if c.WriteOnly {
		// The runbook waits for the reverts itself, observing the wave's other sites.
		written, err := writeReverts(ctx, d.in.Rollout, c.Reason, targets)
		if err != nil {
			return runbook.StepFailed{At: workflow.Now(ctx), Message: fmt.Sprintf("revert of %s failed: %s", strings.Join(c.Sites, ", "), errorMessage(err))}
		}
		out := make([]runbook.Reversion, len(written.Changes))
		for i, ch := range written.Changes {
			out[i] = runbook.Reversion{Site: ch.Site, Revert: ch.RolloutCommit(), Head: ch.Commit, Problem: ch.Problem}
		}
		return runbook.SitesReverted{At: workflow.Now(ctx), Sites: out}
	}
	reverted, err := revertSites(ctx, d.in.Rollout, c.Reason, targets, d.site, d.in.Health.ConvergenceTimeout)
	if err != nil {
		return runbook.StepFailed{At: workflow.Now(ctx), Message: fmt.Sprintf("revert of %s failed: %s", strings.Join(c.Sites, ", "), errorMessage(err))}
	}
	return runbook.SitesReverted{At: workflow.Now(ctx), Sites: reverted}
}

func (d *waveDriver) finish(ctx workflow.Context, c runbook.FinishWave) (WaveResult, error) {
	// The result is recorded: a large wave's is compacted (the query still has every detail).
	status := d.run.Status.Compact()
	switch c.State {
	case rollout.StateFailed:
		workflow.SetCurrentDetails(ctx, "Failed: "+c.Reason)
		return WaveResult{Status: status}, temporal.NewNonRetryableApplicationError(c.Reason, ErrTypeWaveFailed, nil, status)
	case rollout.StateAborted:
		workflow.SetCurrentDetails(ctx, "Aborted by an operator")
		return WaveResult{Status: status, Aborted: true}, nil
	}
	details := fmt.Sprintf("Wave %s healthy on %s", d.in.Wave.Name, rollout.Short(d.in.Commit))
	if d.run.Status.Message != "" {
		details += "; " + d.run.Status.Message
	}
	workflow.SetCurrentDetails(ctx, details)
	return WaveResult{Status: status}, nil
}

// waitConverged waits, in parallel chunks, until the sites applied their commits, one's Flux
// failed at its commit, or the deadline passed.
func waitConverged(ctx workflow.Context, site func(string) rollout.Site, expect []runbook.Expect, deadline time.Time,
	timeout time.Duration, summary string) (runbook.SitesConverged, error) {
	return waitConvergedOffline(ctx, site, expect, deadline, timeout, 0, summary)
}

// waitConvergedOffline is waitConverged that also ends once a site has been unreachable for
// offline (a wave that defers offline sites), and says since when each could not be observed.
func waitConvergedOffline(ctx workflow.Context, site func(string) rollout.Site, expect []runbook.Expect, deadline time.Time,
	timeout, offline time.Duration, summary string) (runbook.SitesConverged, error) {
	parts := split(expect, chunk)
	futures := make([]workflow.Future, len(parts))
	for i, part := range parts {
		in := activities.ConvergeInput{Deadline: deadline, Offline: offline, Sites: make([]activities.Expectation, len(part))}
		for j, e := range part {
			in.Sites[j] = activities.Expectation{Site: site(e.Site), Commit: e.Commit, UnreachableSince: e.Unreachable}
		}
		var sites *activities.Sites
		futures[i] = workflow.ExecuteActivity(convergeOptions(ctx, timeout, summary), sites.WaitConverged, in)
	}
	var out runbook.SitesConverged
	for i, f := range futures {
		var res activities.ConvergeResult
		if err := f.Get(ctx, &res); err != nil {
			return out, err
		}
		out.TimedOut = out.TimedOut || res.TimedOut
		for j, e := range parts[i] {
			c := runbook.Convergence{Site: e.Site}
			if j < len(res.Converged) {
				c.Converged, c.State = res.Converged[j], res.States[j]
			}
			if j < len(res.UnreachableSince) {
				c.Unreachable = res.UnreachableSince[j]
			}
			out.Sites = append(out.Sites, c)
		}
	}
	return out, nil
}

// chunks splits sites into runs of at most chunk.
func chunks(sites []string) [][]string { return split(sites, chunk) }

// split cuts xs into runs of at most n, in order.
func split[T any](xs []T, n int) [][]T {
	var out [][]T
	for start := 0; start < len(xs); start += n {
		out = append(out, xs[start:min(start+n, len(xs))])
	}
	return out
}
