package runbook

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// This file is the runbook of a wave, as data: Wave.Next takes the wave's state and one event
// (a fact its workflow observed) and returns the new state, the next step and its effects. The
// wave workflow only runs them and feeds back what happened, so every decision (when a
// batch is promoted, when a site counts as degraded, what the failure budget allows, when the
// wave is done) is here, pure, and table-tested.
//
// The wave, step by step:
//
//  1. Promote the next batch of MaxParallel sites (a safe point: a pause holds here, an abort
//     ends the wave here). A site counts as promoted when its branch holds this rollout's
//     promotion commit, whichever attempt wrote it.
//  2. Wait until the batch applied its commits, up to ConvergenceTimeout from the batch's
//     start. A site whose Flux fails at the commit, or that does not converge in time,
//     degrades.
//  3. After the last batch, bake: a health round every Interval until Bake has passed since
//     the wave converged; a site degrades after FailureThreshold failed rounds in a row, or
//     after UnknownTimeout unreachable.
//  4. A degraded site within the wave's failure budget (maxFailures) is reverted alone, and
//     the wave goes on. The site past the budget fails the wave; the rollout then reverts by
//     its rollback scope.
//  5. After the bake, a pause holds the wave (a safe point), then it succeeds.

// WavePhase is where a wave's runbook stands.
type WavePhase string

// Phases of a wave.
const (
	WavePromote   WavePhase = "Promote"   // the next batch is to be promoted
	WaveConverge  WavePhase = "Converge"  // the batch's sites are applying their commits
	WaveBake      WavePhase = "Bake"      // health rounds until the bake is over
	WaveReverting WavePhase = "Reverting" // reverting sites within the failure budget
	WaveDone      WavePhase = "Done"
)

// Wave is a wave's state in Wave.Next.
type Wave struct {
	Rollout string
	Commit  string
	Wave    rollout.Wave
	Health  rollout.Health
	// Automatic is the plan's rollback.automatic: without it a degraded site within the
	// budget is left as it is, not reverted.
	Automatic bool
	Status    rollout.WaveStatus
	Phase     WavePhase
	// Batch is the index of the batch being promoted or converging; Batches the wave's.
	Batch    int
	Batches  [][]string
	Deadline time.Time // when the converging batch must have converged
	// Then is the phase to go back to after reverting sites within the budget, and Pending
	// the sites of the batch still applying their commits meanwhile.
	Then    WavePhase
	Pending []Expect
	Paused  bool
	Aborted bool
	// Failed lists the sites that degraded, in order; the first Budget of them were tolerated.
	Failed []string
	Budget int
	// Reason is why the wave failed, once it did.
	Reason string
	// Afresh makes a round that could not measure a site (Unknown) break its streak of failed
	// rounds, so a site that comes back is judged on what it does now (versioned by the
	// workflow: waves recorded before kept the streak).
	Afresh bool `json:",omitempty"`
	// Evidence makes the wave pass only on evidence (versioned by the workflow: waves recorded
	// before ended at BakeUntil whatever their sites' last rounds said):
	//   - the wave succeeds once its bake has passed and every watched site passed its last
	//     round (Passed); a site that has not keeps being observed every Interval until it
	//     passes or degrades, so a bake of 0 is one clean round;
	//   - health rounds go on in every wait: while later batches promote and converge, while a
	//     budgeted revert converges (RevertSites only writes the reverts; AwaitConvergence
	//     waits for them in slices of Interval), and while the wave is paused;
	//   - a gap of more than two intervals between rounds of the bake extends it (Extended).
	Evidence bool `json:",omitempty"`
	// Seen is when the wave's converged sites were last observed (a health round, or the
	// convergence of the first batch); Slice is the deadline of the convergence wait in
	// progress, shorter than Deadline when a round falls due first; Extended is how much
	// unobserved time lengthened the bake.
	Seen     time.Time
	Slice    time.Time
	Extended time.Duration
	// RevertWait lists the reverts written within the budget that the sites have not been
	// seen applying yet, and RevertDeadline when they must have.
	RevertWait     []Expect
	RevertDeadline time.Time
	// Offline makes an Evidence wave defer its offline sites when the plan says so
	// (Health.Defers; versioned by the workflow: offline.go); Rejoins are the batches of
	// Deferred sites that came back, promoted after the plan's Batches (and part of them).
	Offline bool       `json:",omitempty"`
	Rejoins [][]string `json:",omitempty"`

	// Reporting says how the wave tells its rollout of its changes (Report); Reported is the
	// status the rollout was last told (ReportCoalesced), at ReportedAt.
	Reporting  Reporting
	Reported   rollout.WaveStatus
	ReportedAt time.Time

	// index maps site names to positions in Status.Sites; the sites and their order never
	// change, so every state Next returns shares it.
	index map[string]int
}

// NewWave returns the state of a wave about to start, with its sites Pending.
func NewWave(rolloutID, commit string, w rollout.Wave, h rollout.Health, automatic bool, status rollout.WaveStatus) Wave {
	r := Wave{Rollout: rolloutID, Commit: commit, Wave: w, Health: h, Automatic: automatic, Status: status,
		Phase: WavePromote, Batches: w.Batches(), Budget: w.MaxFailures.Allowed(len(w.Sites))}
	r.reindex()
	return r
}

func (r *Wave) reindex() { r.index = r.Status.SiteIndex() }

// WaveResume is where a wave's runbook stands, beside its status: what a wave that continues
// as new (a long bake) carries to its next run.
type WaveResume struct {
	Phase    WavePhase
	Batch    int       `json:",omitempty"`
	Deadline time.Time `json:",omitzero"`
	Then     WavePhase `json:",omitempty"`
	Pending  []Expect  `json:",omitempty"`
	Paused   bool      `json:",omitempty"`
	Aborted  bool      `json:",omitempty"`
	Failed   []string  `json:",omitempty"`
	// Evidence waves only (Wave.Evidence).
	Seen           time.Time     `json:",omitzero"`
	Extended       time.Duration `json:",omitempty"`
	RevertWait     []Expect      `json:",omitempty"`
	RevertDeadline time.Time     `json:",omitzero"`
	Rejoins        [][]string    `json:",omitempty"`
}

// Resume returns where the runbook stands; ResumeWave takes it back with the status.
func (r Wave) Resume() WaveResume {
	return WaveResume{Phase: r.Phase, Batch: r.Batch, Deadline: r.Deadline, Then: r.Then, Pending: r.Pending,
		Paused: r.Paused, Aborted: r.Aborted, Failed: r.Failed,
		Seen: r.Seen, Extended: r.Extended, RevertWait: r.RevertWait, RevertDeadline: r.RevertDeadline, Rejoins: r.Rejoins}
}

// ResumeWave returns the state of a wave that continued as new: its status then, and where
// its runbook stood (Wave.Resume).
func ResumeWave(rolloutID, commit string, w rollout.Wave, h rollout.Health, automatic bool, status rollout.WaveStatus, res WaveResume) Wave {
	r := NewWave(rolloutID, commit, w, h, automatic, status)
	r.Phase, r.Batch, r.Deadline, r.Then, r.Pending = res.Phase, res.Batch, res.Deadline, res.Then, res.Pending
	r.Paused, r.Aborted, r.Failed = res.Paused, res.Aborted, res.Failed
	r.Seen, r.Extended, r.RevertWait, r.RevertDeadline = res.Seen, res.Extended, res.RevertWait, res.RevertDeadline
	r.Rejoins = res.Rejoins
	r.Batches = append(r.Batches, res.Rejoins...)
	return r
}

// Site returns the named site's status; it looks sites up by name once per wave, so a wave of
// thousands of sites is not searched once per site.
func (r *Wave) Site(name string) *rollout.SiteStatus {
	if r.index == nil {
		r.reindex()
	}
	if i, ok := r.index[name]; ok {
		return &r.Status.Sites[i]
	}
	return nil
}

// WaveEvent is a fact the wave's workflow observed.
type WaveEvent interface{ waveEvent() }

// WaveStarted starts the runbook.
type WaveStarted struct{ At time.Time }

// Promotion is what a promotion did to one site branch.
type Promotion struct {
	Site     string
	Commit   string // the branch head after the promotion
	Previous string // the head before
	// Ours is true when the branch holds this rollout's promotion commit, written by this
	// attempt or an earlier one whose answer was lost.
	Ours bool
	// Problem says why the site could not be promoted (its branch does not exist): the site
	// degrades, against the wave's failure budget, and the others go on.
	Problem string `json:",omitempty"`
}

// BatchPromoted says the batch's promotion commits are on their branches. A batch is pushed in
// parts; when a part failed for good, Failure says why and Sites lists the parts that landed
// before it: they are promoted, and the wave fails. Cancelled says an operator's abort cancelled
// the push of the batch: Sites lists what landed all the same (read from git), and the wave
// ends aborted.
type BatchPromoted struct {
	At        time.Time
	Sites     []Promotion
	Failure   string `json:",omitempty"`
	Cancelled bool   `json:",omitempty"`
}

// Convergence is the last observation of a site waiting to apply its commit.
type Convergence struct {
	Site      string
	Converged bool
	State     rollout.SiteState
	// Unreachable is since when the site could not be observed, when its last observation
	// could not (set when the wait was given the time, Expect.Unreachable, or saw it begin).
	Unreachable time.Time `json:",omitzero"`
}

// SitesConverged says where the sites that were waited for stand: every one converged, one's
// Flux failed at the commit, or the deadline passed (TimedOut).
type SitesConverged struct {
	At       time.Time
	Sites    []Convergence
	TimedOut bool
}

// HealthObserved is one health round over the wave's sites: At is when it ended, Started when
// it began (zero: At).
type HealthObserved struct {
	At      time.Time
	Started time.Time
	States  []rollout.SiteState
}

// Reversion is what a revert did to one site: the revert commit (this rollout's, written now
// or found), or "" when git held no promotion of the rollout there; then whether the site
// applied it.
type Reversion struct {
	Site   string
	Revert string
	// Head is the branch head after the revert: the revert, or a commit pushed after it (set
	// by a revert that does not wait, RevertSites.WriteOnly).
	Head      string `json:",omitempty"`
	Converged bool
	State     rollout.SiteState
	// Message explains a revert that was written but not seen applied.
	Message string `json:",omitempty"`
	// Problem says why no revert could be written (a conflict, a missing branch) and how to
	// fix it by hand; the site then still runs the promotion.
	Problem string `json:",omitempty"`
}

// applyRevert records what a revert did to the site: Reverted, with what it applied (how
// says why, as in "reverted within the failure budget"), or, when git held no promotion of
// the rollout on its branch, not promoted by it after all.
func applyRevert(s *rollout.SiteStatus, v Reversion, how string, timeout time.Duration, now time.Time) {
	s.UpdatedAt = now
	if v.Problem != "" {
		s.Message = "not reverted: " + v.Problem
		return
	}
	if v.Revert == "" {
		s.Promoted = false
		s.Message = "nothing of this rollout to revert on " + s.Branch
		return
	}
	s.Promoted, s.Revert, s.Verdict = true, v.Revert, rollout.VerdictReverted
	switch {
	case v.Converged:
		s.Revision = v.State.Revision
		s.Message = how + ": applied " + rollout.Short(v.Revert)
	case v.Message != "":
		s.Message = v.Message
	default:
		s.Revision = v.State.Revision
		s.Message = fmt.Sprintf("revert %s not applied within %s: %s", rollout.Short(v.Revert), timeout, v.State.Message)
	}
}

// SitesReverted says the sites within the failure budget were reverted.
type SitesReverted struct {
	At    time.Time
	Sites []Reversion
}

// WaveTick says a timer the runbook asked for fired.
type WaveTick struct{ At time.Time }

// WaveControl is an operator's control reaching the wave: ControlPause, ControlResume or
// ControlAbort.
type WaveControl struct {
	At     time.Time
	Action ControlAction
}

// StepFailed says a command could not be carried out (an activity failed for good).
type StepFailed struct {
	At      time.Time
	Message string
}

// StepCancelled says the workflow cancelled the step in progress (a convergence wait) because
// an operator's abort (ControlAbort, not a supersede) arrived: the wave ends aborted at once instead of at its next safe point. Sites
// already promoted stay promoted, so a rollback reverts them.
type StepCancelled struct{ At time.Time }

func (StepCancelled) waveEvent() {}

func (WaveStarted) waveEvent()    {}
func (BatchPromoted) waveEvent()  {}
func (SitesConverged) waveEvent() {}
func (HealthObserved) waveEvent() {}
func (SitesReverted) waveEvent()  {}
func (WaveTick) waveEvent()       {}
func (WaveControl) waveEvent()    {}
func (StepFailed) waveEvent()     {}

// ControlAction is an operator's control on a running rollout, as its waves see it.
type ControlAction string

// Controls a wave obeys (and ControlSupersede, which stops it like an abort but never cuts a
// convergence wait short).
const (
	ControlPause  ControlAction = "pause"
	ControlResume ControlAction = "resume"
	ControlAbort  ControlAction = "abort"
)

// WaveStep is what the wave's workflow must do next.
type WaveStep interface{ waveStep() }

// PromoteSites writes promotion commits of the rollout's commit on the sites' branches.
type PromoteSites struct {
	Batch int
	Sites []string
}

// Expect is a site and the commit it must apply.
type Expect struct {
	Site   string
	Commit string
	// Unreachable is since when the site could not be observed, if it could not at its last
	// observation (a wave that defers offline sites).
	Unreachable time.Time `json:",omitzero"`
}

// AwaitConvergence waits until the sites applied their commits, one's Flux fails, or Deadline;
// with Offline, also until a site has been unreachable that long (health.offline.after).
type AwaitConvergence struct {
	Sites    []Expect
	Deadline time.Time
	Offline  time.Duration `json:",omitempty"`
}

// ObserveHealth runs one health round over the sites.
type ObserveHealth struct {
	Sites []string
}

// SleepUntil waits for a timer (the next health round); a control wakes it early.
type SleepUntil struct{ At time.Time }

// HoldPaused waits for the next control: the wave is paused at a safe point. Until, when set,
// is when the next health round of the wave's converged sites is due: a WaveTick then.
type HoldPaused struct {
	Until time.Time `json:",omitzero"`
}

// RevertSites reverts the rollout's promotion on the sites and waits until they applied it;
// with WriteOnly it only writes the reverts (SitesReverted then says what it wrote), and the
// runbook waits for them itself, observing the other sites meanwhile.
type RevertSites struct {
	Sites     []string
	Reason    string
	WriteOnly bool `json:",omitempty"`
}

// FinishWave ends the wave: Succeeded, Failed (Reason says why) or Aborted.
type FinishWave struct {
	State  rollout.State
	Reason string
}

func (PromoteSites) waveStep()     {}
func (AwaitConvergence) waveStep() {}
func (ObserveHealth) waveStep()    {}
func (SleepUntil) waveStep()       {}
func (HoldPaused) waveStep()       {}
func (RevertSites) waveStep()      {}
func (FinishWave) waveStep()       {}

// WaveEffect is what the wave's workflow does at once, before the step: tell its rollout what
// changed (Report).
type WaveEffect interface{ waveEffect() }

// Report tells the rollout what changed in the wave's status, so its status query shows the
// wave live.
type Report struct{ Change rollout.WaveChange }

func (Report) waveEffect() {}

// Reporting is how a wave tells its rollout of its changes.
type Reporting int

// Ways of reporting (versioned by the workflow).
const (
	ReportNone      Reporting = iota // a wave on its own, or recorded before its reports
	ReportEach                       // every change, at once
	ReportCoalesced                  // what decides at once; the rest at most every ProgressEvery
)

// ProgressEvery is how often at most a wave tells its rollout of changes that decide nothing
// (measurements, failure counts, messages, a longer bake); what decides (the wave's state and
// times, a site's promotion, verdict or revert) is reported at once. One report per change
// made the rollout's history grow with every health round of a flapping check: 2,880 a day
// at 30 s, and the rollout does not continue as new.
const ProgressEvery = 5 * time.Minute

// Next folds one event into the wave's state and returns the new state, the step to run next
// (nil: the step in progress goes on, as after a control that takes effect at the next safe
// point) and the effects to run first. It is pure: the same state and event always give the
// same answer, so a workflow replaying its history makes the same decisions. It never changes
// the state it is given.
func (r Wave) Next(e WaveEvent) (Wave, WaveStep, []WaveEffect) {
	before := r.Status
	r, step := r.next(e)
	r, effects := r.report(before, eventAt(e), false)
	return r, step, effects
}

// Flush reports every change the rollout has not been told of (before the wave continues as
// new: its next run starts from this status).
func (r Wave) Flush(now time.Time) (Wave, []WaveEffect) {
	if r.Reporting != ReportCoalesced {
		return r, nil
	}
	return r.report(r.Status, now, true)
}

// report is what the rollout must be told after the status was before.
func (r Wave) report(before rollout.WaveStatus, now time.Time, force bool) (Wave, []WaveEffect) {
	switch r.Reporting {
	case ReportEach:
		if change, ok := rollout.Changes(before, r.Status); ok {
			return r, []WaveEffect{Report{Change: change}}
		}
	case ReportCoalesced:
		change, ok, decisive := rollout.Diff(r.Reported, r.Status)
		if !ok || (!force && !decisive && now.Sub(r.ReportedAt) < ProgressEvery) {
			return r, nil
		}
		r.Reported, r.ReportedAt = r.Status, now
		return r, []WaveEffect{Report{Change: change}}
	}
	return r, nil
}

// eventAt is when e happened.
func eventAt(e WaveEvent) time.Time {
	switch e := e.(type) {
	case WaveStarted:
		return e.At
	case WaveControl:
		return e.At
	case StepFailed:
		return e.At
	case StepCancelled:
		return e.At
	case BatchPromoted:
		return e.At
	case SitesConverged:
		return e.At
	case HealthObserved:
		return e.At
	case SitesProbed:
		return e.At
	case WaveTick:
		return e.At
	case SitesReverted:
		return e.At
	}
	panic(fmt.Sprintf("rollout: unknown wave event %T", e))
}

func (r Wave) next(e WaveEvent) (Wave, WaveStep) {
	r.Status.Sites = append([]rollout.SiteStatus(nil), r.Status.Sites...) // the caller's copy stays as it was
	r.Failed = append([]string(nil), r.Failed...)
	switch e := e.(type) {
	case WaveStarted:
		r.Status.StartedAt = e.At
		if r.defers() && len(r.Batches) > 0 {
			return r.startProbe(e.At)
		}
		return r.promoteNext(e.At)
	case SitesProbed:
		return r.probed(e)
	case WaveControl:
		return r.control(e)
	case StepFailed:
		return r.fail(e.At, e.Message)
	case StepCancelled:
		r.Aborted = true
		return r.abort(e.At)
	case BatchPromoted:
		return r.promoted(e)
	case SitesConverged:
		return r.converged(e)
	case HealthObserved:
		return r.observed(e)
	case WaveTick:
		if r.Phase == WaveBake || (r.Evidence && r.Paused && r.Phase == WavePromote) {
			return r, ObserveHealth{Sites: r.observable()}
		}
		return r, r.waiting()
	case SitesReverted:
		return r.reverted(e)
	}
	panic(fmt.Sprintf("rollout: unknown wave event %T", e))
}

// control applies pause, resume or abort. They take effect at the next safe point (before a
// batch, after the bake), except that an abort also ends a bake early; a revert in flight
// always finishes.
func (r Wave) control(e WaveControl) (Wave, WaveStep) {
	switch e.Action {
	case ControlPause:
		r.Paused = true
	case ControlResume:
		r.Paused = false
	case ControlAbort, ControlSupersede:
		// A stop ends a pause, as it does the rollout's: the wave stops at its next safe
		// point, paused or not.
		r.Aborted, r.Paused = true, false
	}
	switch {
	case r.Phase == WaveDone:
		return r, nil
	case r.Phase == WavePromote:
		return r.promoteNext(e.At)
	case r.Phase == WaveBake && r.Aborted:
		return r.abort(e.At)
	case r.Phase == WaveBake && !r.Paused && r.Status.State == rollout.StatePaused:
		// Resumed after the bake: the wave may succeed now.
		return r.bakeNext(e.At)
	}
	return r, r.waiting()
}

// waiting is the nil command: the event did not change what the workflow is doing, so it goes
// on with the command in progress.
func (r Wave) waiting() WaveStep { return nil }

// promoteNext starts the next batch, or the bake after the last one; it is a safe point.
func (r Wave) promoteNext(now time.Time) (Wave, WaveStep) {
	r.Phase = WavePromote
	if r.Aborted {
		return r.abort(now)
	}
	if r.Batch >= len(r.Batches) {
		r.Phase = WaveBake
		r.Status.State = rollout.StateBaking
		if !r.defers() || r.Status.ConvergedAt.IsZero() {
			// Sites that rejoined bake what is left of the wave's bake.
			r.Status.ConvergedAt = now
			r.Status.BakeUntil = now.Add(r.Wave.Bake)
		}
		return r, ObserveHealth{Sites: r.observable()}
	}
	if r.Paused {
		r.Status.State = rollout.StatePaused
		return r, r.hold(now)
	}
	if r.roundDue(now) {
		// The sites of earlier batches are observed between pushes too.
		return r, ObserveHealth{Sites: r.roundSites()}
	}
	if r.defers() {
		return r.probeBatch(now)
	}
	r.Status.State = rollout.StatePromoting
	return r, PromoteSites{Batch: r.Batch, Sites: r.Batches[r.Batch]}
}

func (r Wave) promoted(e BatchPromoted) (Wave, WaveStep) {
	var expect []Expect
	var missing []string
	for _, p := range e.Sites {
		s := r.Site(p.Site)
		if s == nil {
			continue
		}
		if p.Problem != "" {
			s.Verdict, s.UpdatedAt, s.Message = rollout.VerdictDegraded, e.At, "not promoted: "+p.Problem
			missing = append(missing, p.Site)
			continue
		}
		s.Promotion, s.Promoted, s.Previous = p.Commit, p.Ours, p.Previous
		s.Verdict, s.UpdatedAt = rollout.VerdictConverging, e.At
		expect = append(expect, Expect{Site: p.Site, Commit: p.Commit})
	}
	if e.Failure != "" {
		// The sites that landed stay promoted, so the rollout's revert finds them.
		return r.fail(e.At, e.Failure)
	}
	if e.Cancelled {
		// Aborted during the push: what landed stays promoted, as an abort leaves it.
		r.Aborted = true
		return r.abort(e.At)
	}
	if len(missing) > 0 {
		// Never promoted: nothing to revert; within the budget the wave goes on without them.
		r.Failed = append(r.Failed, missing...)
		if len(r.Failed) > r.Budget {
			return r.fail(e.At, r.degradedReason(missing))
		}
		for _, name := range missing {
			r.Site(name).Message += " (within the failure budget)"
		}
		if len(expect) == 0 {
			r.Batch++
			return r.promoteNext(e.At)
		}
	}
	r.Phase = WaveConverge
	r.Status.State = rollout.StateConverging
	r.Deadline = e.At.Add(r.Health.ConvergenceTimeout)
	if r.Evidence {
		r.Pending = expect
		return r.awaitConverge(e.At)
	}
	return r, AwaitConvergence{Sites: expect, Deadline: r.Deadline}
}

// converged judges the sites that were waited for: converged ones are applied, a site whose
// Flux failed at the commit or that missed the deadline degrades. Sites still converging are
// waited for again while the deadline allows.
func (r Wave) converged(e SitesConverged) (Wave, WaveStep) {
	if r.Phase == WaveReverting {
		return r.revertsConverged(e)
	}
	var degraded, offline []string
	var pending []Expect
	// sliced: the wait ended for a health round, not at the convergence deadline.
	sliced := r.Evidence && e.TimedOut && r.Slice.Before(r.Deadline)
	for _, c := range e.Sites {
		s := r.Site(c.Site)
		if s == nil || s.Verdict != rollout.VerdictConverging {
			continue
		}
		st := c.State
		s.UpdatedAt, s.Revision = e.At, st.Revision
		if r.defers() {
			switch {
			case c.Converged || st.Reachable:
				s.UnknownSince = time.Time{}
			case !c.Unreachable.IsZero():
				s.UnknownSince = c.Unreachable
			}
			if r.offlineAt(c, e.At) {
				offline = append(offline, c.Site)
				continue
			}
		}
		if c.Converged {
			s.Verdict = rollout.VerdictHealthy
			s.Message = "applied " + rollout.Short(s.Promotion)
			if r.Evidence && r.Seen.IsZero() {
				r.Seen = e.At // observed from now on
			}
			continue
		}
		switch {
		case st.FluxFailed(s.Promotion):
			s.Message = fmt.Sprintf("flux failed to apply %s: %s", rollout.Short(s.Promotion), st.Message)
		case sliced, !e.TimedOut && e.At.Before(r.Deadline):
			// Another site ended the wait early; this one still has time.
			pending = append(pending, Expect{Site: c.Site, Commit: s.Promotion})
			continue
		case !st.Reachable:
			s.Message = fmt.Sprintf("did not converge within %s: unreachable: %s", r.Health.ConvergenceTimeout, st.Message)
		default:
			s.Message = fmt.Sprintf("did not converge within %s: applied %q, want %s", r.Health.ConvergenceTimeout, st.Revision, rollout.Short(s.Promotion))
		}
		s.Verdict = rollout.VerdictDegraded
		degraded = append(degraded, c.Site)
	}
	if len(offline) > 0 {
		if len(degraded) == 0 {
			return r.withdraw(e.At, offline, pending)
		}
		// Degraded sites first; the offline ones are withdrawn at the next wait, which
		// returns at once for them.
		for _, name := range offline {
			pending = append(pending, Expect{Site: name, Commit: r.Site(name).Promotion})
		}
	}
	if r.Evidence {
		r.Pending = pending
		switch {
		case len(degraded) > 0 && len(pending) > 0:
			r.Then = WaveConverge
		case len(degraded) > 0:
			r.Then = WavePromote
			r.Batch++
		case len(pending) > 0:
			return r.awaitConverge(e.At)
		default:
			r.Batch++
			return r.promoteNext(e.At)
		}
		return r.degrade(e.At, degraded, pending)
	}
	if len(degraded) > 0 {
		r.Then = WaveConverge
		if len(pending) == 0 {
			r.Then = WavePromote
		}
		return r.degrade(e.At, degraded, pending)
	}
	if len(pending) > 0 {
		return r, AwaitConvergence{Sites: pending, Deadline: r.Deadline}
	}
	r.Batch++
	return r.promoteNext(e.At)
}

// awaitConverge waits for the batch's sites still applying their commits (Pending), in slices
// that end when the next health round of the converged sites falls due (Evidence).
func (r Wave) awaitConverge(now time.Time) (Wave, WaveStep) {
	r.Phase = WaveConverge
	if r.Aborted {
		return r.abort(now)
	}
	if r.roundDue(now) {
		return r, ObserveHealth{Sites: r.roundSites()}
	}
	r.Slice = r.sliceEnd(now, r.Deadline)
	if r.defers() {
		sites := slices.Clone(r.Pending)
		for i := range sites {
			if s := r.Site(sites[i].Site); s != nil {
				sites[i].Unreachable = s.UnknownSince
			}
		}
		return r, AwaitConvergence{Sites: sites, Deadline: r.Slice, Offline: r.Health.Offline.After}
	}
	return r, AwaitConvergence{Sites: r.Pending, Deadline: r.Slice}
}

// awaitReverts waits for the reverts written within the failure budget to be applied, in
// slices like awaitConverge, then goes back to what the wave was doing (Then).
func (r Wave) awaitReverts(now time.Time) (Wave, WaveStep) {
	r.Phase = WaveReverting
	if r.Aborted {
		return r.abort(now)
	}
	if len(r.RevertWait) == 0 {
		r.RevertDeadline = time.Time{}
		return r.resume(now, r.Pending)
	}
	if r.roundDue(now) {
		return r, ObserveHealth{Sites: r.roundSites()}
	}
	r.Slice = r.sliceEnd(now, r.RevertDeadline)
	return r, AwaitConvergence{Sites: r.RevertWait, Deadline: r.Slice}
}

// revertsConverged judges the reverts waited for: applied, failed at Flux, or not applied by
// RevertDeadline; the others are waited for again after a health round.
func (r Wave) revertsConverged(e SitesConverged) (Wave, WaveStep) {
	over := !e.At.Before(r.RevertDeadline) || (e.TimedOut && !r.Slice.Before(r.RevertDeadline))
	want := make(map[string]string, len(r.RevertWait))
	for _, x := range r.RevertWait {
		want[x.Site] = x.Commit
	}
	var wait []Expect
	for _, c := range e.Sites {
		s := r.Site(c.Site)
		commit, ok := want[c.Site]
		if s == nil || !ok {
			continue
		}
		v := Reversion{Site: c.Site, Revert: s.Revert, Converged: c.Converged, State: c.State}
		switch {
		case c.Converged, over:
		case c.State.FluxFailed(commit):
			v.Message = fmt.Sprintf("revert %s not applied: flux failed: %s", rollout.Short(s.Revert), c.State.Message)
		default:
			wait = append(wait, Expect{Site: c.Site, Commit: commit})
			continue
		}
		applyRevert(s, v, "reverted within the failure budget", r.Health.ConvergenceTimeout, e.At)
	}
	r.RevertWait = wait
	return r.awaitReverts(e.At)
}

// observed folds a health round into the sites' verdicts.
func (r Wave) observed(e HealthObserved) (Wave, WaveStep) {
	if r.Evidence {
		return r.observedEvidence(e)
	}
	degraded := r.fold(e, func(s *rollout.SiteStatus) bool {
		return s.Verdict != rollout.VerdictDegraded && s.Verdict != rollout.VerdictReverted
	})
	if len(degraded) > 0 {
		r.Then = WaveBake
		return r.degrade(e.At, degraded, nil)
	}
	return r.bakeNext(e.At)
}

// observedEvidence folds a health round into the verdicts of the converged sites (Evidence),
// lengthens the bake by what a late round left unobserved, and goes on with what the wave was
// doing: a convergence wait, a revert's wait, the next batch, or the bake.
func (r Wave) observedEvidence(e HealthObserved) (Wave, WaveStep) {
	r.extend(cmp.Or(e.Started, e.At))
	r.Seen = e.At
	// Only converged sites that are not decided yet.
	degraded := r.fold(e, isWatched)
	r, back := r.rejoin(e)
	if len(degraded) > 0 {
		if r.Phase != WaveReverting {
			r.Then = r.Phase // Reverting keeps what it goes back to
		}
		if r.Then == WaveBake && back {
			r.Then = WavePromote // the sites back are promoted after the reverts
		}
		return r.degrade(e.At, degraded, r.Pending)
	}
	switch r.Phase {
	case WaveProbe:
		return r.probeBatch(e.At)
	case WaveBake:
		if back {
			return r.promoteNext(e.At)
		}
	case WaveConverge:
		return r.awaitConverge(e.At)
	case WaveReverting:
		return r.awaitReverts(e.At)
	case WavePromote:
		return r.promoteNext(e.At)
	}
	return r.bakeNext(e.At)
}

// fold folds the round's observations of the sites observe accepts into their statuses, and
// returns the sites that degraded, in the round's order.
func (r *Wave) fold(e HealthObserved, observe func(*rollout.SiteStatus) bool) []string {
	var degraded []string
	for _, st := range e.States {
		s := r.Site(st.Site)
		if s == nil || !observe(s) {
			continue
		}
		s.ObserveHealth(st, s.Promotion, r.Health, e.At)
		if r.Afresh && s.Verdict == rollout.VerdictUnknown {
			s.Failures = 0
		}
		if s.Verdict == rollout.VerdictDegraded {
			degraded = append(degraded, s.Name)
		}
	}
	return degraded
}

// extend lengthens the bake when the round that began at now came more than two intervals
// after the end of the last one (a worker down, a slow history): the part of the bake nobody
// observed, beyond one interval, is baked again. The time a round takes does not count: its
// sites were being observed. Nor does a timer's lateness (TimerSlack): with the second-long
// intervals of a rehearsal, every round would extend the bake.
func (r *Wave) extend(now time.Time) {
	bake, until := r.Status.ConvergedAt, r.Status.BakeUntil
	if r.Seen.IsZero() || until.IsZero() || !r.Seen.Before(until) || now.Sub(r.Seen) <= max(2*r.Health.Interval, r.Health.Interval+TimerSlack) {
		return
	}
	from := r.Seen
	if from.Before(bake) {
		from = bake
	}
	ext := now.Sub(from) - r.Health.Interval
	if ext <= 0 {
		return
	}
	r.Extended += ext
	r.Status.BakeUntil = until.Add(ext)
	r.Status.Message = fmt.Sprintf("bake extended by %s to %s: no health round for %s", ext,
		r.Status.BakeUntil.UTC().Format(time.RFC3339), now.Sub(r.Seen))
}

// bakeNext sleeps until the next health round, or ends the bake: once it has passed, and in an
// Evidence wave once every watched site passed its last round too.
func (r Wave) bakeNext(now time.Time) (Wave, WaveStep) {
	r.Phase = WaveBake
	if r.Aborted {
		return r.abort(now)
	}
	if now.Before(r.Status.BakeUntil) {
		r.Status.State = rollout.StateBaking
		return r, SleepUntil{At: minTime(now.Add(r.Health.Interval), r.Status.BakeUntil)}
	}
	if r.Evidence {
		if open := r.unpassed(); len(open) > 0 {
			// The bake is over, the evidence is not: observe the open sites until each passes
			// a clean round or degrades.
			r.Status.State = rollout.StateBaking
			first := r.Site(open[0])
			r.Status.Message = fmt.Sprintf("bake over; waiting for %s to pass a clean round: %s: %s", rollout.SitesLabel(open), open[0], first.Message)
			return r, SleepUntil{At: now.Add(r.Health.Interval)}
		}
	}
	if r.Paused {
		// A paused rollout holds the wave after its bake, until resumed.
		r.Status.State = rollout.StatePaused
		return r, r.hold(now)
	}
	r.Phase = WaveDone
	r.Status.State = rollout.StateSucceeded
	r.Status.FinishedAt = now
	var notes []string
	if n := r.revertedCount(); n > 0 {
		notes = append(notes, fmt.Sprintf("%s reverted within the failure budget (maxFailures %s)", rollout.Count(n, "site"), r.Wave.MaxFailures))
	}
	if r.Extended > 0 {
		notes = append(notes, fmt.Sprintf("bake extended by %s for missed health rounds", r.Extended))
	}
	if note := r.deferredNote(); note != "" {
		notes = append(notes, note)
	}
	if r.Evidence || len(notes) > 0 {
		// An Evidence wave's waiting message gives way; waves recorded before kept theirs.
		r.Status.Message = strings.Join(notes, "; ")
	}
	return r, FinishWave{State: rollout.StateSucceeded}
}

// TimerSlack is how late a Temporal timer may fire (the server fires timers with a precision of
// about a second) before a gap between health rounds counts as unobserved time.
const TimerSlack = 2 * time.Second

// unpassed lists the watched sites whose last round was not clean.
func (r Wave) unpassed() []string {
	var out []string
	for _, s := range r.Status.Sites {
		if s.Watched() && !s.Passed() {
			out = append(out, s.Name)
		}
	}
	return out
}

// watched lists the sites a health round of an Evidence wave observes: converged, and not
// decided (degraded or reverted), as the rollout's watch observes a wave that passed.
func (r Wave) watched() []string { return r.Status.WatchedSites() }

// anyWatched reports whether any site is watched, or Deferred (a round sees it back), without
// listing them.
func (r Wave) anyWatched() bool {
	if slices.ContainsFunc(r.Status.Sites, rollout.SiteStatus.Watched) {
		return true
	}
	return r.defers() && slices.ContainsFunc(r.Status.Sites, func(s rollout.SiteStatus) bool { return s.Verdict == rollout.VerdictDeferred })
}

// roundSites lists the sites a health round of an Evidence wave observes: the watched ones,
// and the Deferred ones, to see them back.
func (r Wave) roundSites() []string {
	return append(r.watched(), r.deferredSites()...)
}

// observable lists the sites a round of the bake observes: watched and Deferred (Evidence),
// or live.
func (r Wave) observable() []string {
	if r.Evidence {
		return r.roundSites()
	}
	return r.live()
}

// roundDue reports whether a health round of the converged sites is due at now (Evidence).
func (r Wave) roundDue(now time.Time) bool {
	return r.Evidence && !r.Seen.IsZero() && !now.Before(r.Seen.Add(r.Health.Interval)) && r.anyWatched()
}

// sliceEnd is where a wait until deadline stops for the next health round (Evidence).
func (r Wave) sliceEnd(now, deadline time.Time) time.Time {
	if !r.Evidence || r.Seen.IsZero() || !r.anyWatched() {
		return deadline
	}
	return minTime(deadline, r.Seen.Add(r.Health.Interval))
}

// hold is the paused wave's command: wait for a control, and in an Evidence wave with
// converged sites, wake for their next health round.
func (r Wave) hold(now time.Time) WaveStep {
	if !r.Evidence || !r.anyWatched() {
		return HoldPaused{}
	}
	if r.Seen.IsZero() {
		return HoldPaused{Until: now.Add(r.Health.Interval)}
	}
	return HoldPaused{Until: r.Seen.Add(r.Health.Interval)}
}

// degrade counts newly degraded sites against the failure budget: within it they are reverted
// alone (or, without automatic rollback, left degraded) and the wave goes on; past it the wave
// fails, naming them. pending are sites of the batch still converging.
func (r Wave) degrade(now time.Time, sites []string, pending []Expect) (Wave, WaveStep) {
	r.Failed = append(r.Failed, sites...)
	if len(r.Failed) > r.Budget {
		return r.fail(now, r.degradedReason(sites))
	}
	reason := r.degradedReason(sites) + fmt.Sprintf("; within the failure budget (%d of %d)", len(r.Failed), r.Budget)
	for _, name := range sites {
		r.Site(name).Message += " (within the failure budget)"
	}
	if !r.Automatic {
		return r.resume(now, pending)
	}
	r.Phase = WaveReverting
	r.Pending = pending
	return r, RevertSites{Sites: sites, Reason: reason, WriteOnly: r.Evidence}
}

// resume goes back to what the wave was doing before a budgeted failure.
func (r Wave) resume(now time.Time, pending []Expect) (Wave, WaveStep) {
	if r.Evidence {
		switch r.Then {
		case WaveConverge:
			return r.awaitConverge(now)
		case WaveBake:
			return r.bakeNext(now)
		}
		return r.promoteNext(now) // the batch counter already moved on
	}
	switch r.Then {
	case WaveConverge:
		r.Phase = WaveConverge
		return r, AwaitConvergence{Sites: pending, Deadline: r.Deadline}
	case WaveBake:
		return r.bakeNext(now)
	}
	r.Batch++
	return r.promoteNext(now)
}

func (r Wave) reverted(e SitesReverted) (Wave, WaveStep) {
	if r.Phase == WaveWithdraw {
		return r.withdrawn(e)
	}
	if r.Evidence {
		// The reverts are written, not yet applied: wait for them, observing the others.
		r.RevertWait = slices.Clone(r.RevertWait)
		for _, v := range e.Sites {
			s := r.Site(v.Site)
			if s == nil {
				continue
			}
			if v.Problem != "" || v.Revert == "" {
				applyRevert(s, v, "reverted within the failure budget", r.Health.ConvergenceTimeout, e.At)
				continue
			}
			s.UpdatedAt = e.At
			s.Promoted, s.Revert, s.Verdict = true, v.Revert, rollout.VerdictReverted
			s.Message = fmt.Sprintf("revert %s written within the failure budget; waiting for the site to apply it", rollout.Short(v.Revert))
			r.RevertWait = append(r.RevertWait, Expect{Site: v.Site, Commit: cmp.Or(v.Head, v.Revert)})
		}
		r.RevertDeadline = e.At.Add(r.Health.ConvergenceTimeout)
		return r.awaitReverts(e.At)
	}
	for _, v := range e.Sites {
		if s := r.Site(v.Site); s != nil {
			applyRevert(s, v, "reverted within the failure budget", r.Health.ConvergenceTimeout, e.At)
		}
	}
	pending := r.Pending
	r.Pending = nil
	return r.resume(e.At, pending)
}

func (r Wave) abort(now time.Time) (Wave, WaveStep) {
	r.Phase = WaveDone
	r.Status.State = rollout.StateAborted
	r.Status.Message = "stopped by an operator"
	r.Status.FinishedAt = now
	return r, FinishWave{State: rollout.StateAborted}
}

func (r Wave) fail(now time.Time, reason string) (Wave, WaveStep) {
	r.Phase = WaveDone
	r.Reason = reason
	r.Status.State = rollout.StateFailed
	r.Status.Message = reason
	r.Status.FinishedAt = now
	return r, FinishWave{State: rollout.StateFailed, Reason: reason}
}

// live lists the sites a health round observes: every promoted site whose verdict is not final
// (degraded within the budget, or reverted).
func (r Wave) live() []string {
	out := make([]string, 0, len(r.Status.Sites))
	for _, s := range r.Status.Sites {
		if s.Verdict != rollout.VerdictReverted && s.Verdict != rollout.VerdictPending && s.Verdict != rollout.VerdictDegraded {
			out = append(out, s.Name)
		}
	}
	return out
}

// revertedCount counts the sites reverted within the budget.
func (r Wave) revertedCount() int {
	n := 0
	for _, s := range r.Status.Sites {
		if s.Verdict == rollout.VerdictReverted {
			n++
		}
	}
	return n
}

// degradedReason names the degraded sites and why the first one failed.
func (r Wave) degradedReason(sites []string) string {
	first := r.Site(sites[0])
	if len(sites) == 1 {
		return fmt.Sprintf("site %s degraded in wave %s: %s", sites[0], r.Wave.Name, first.Message)
	}
	return fmt.Sprintf("sites %s degraded in wave %s: %s: %s", strings.Join(sites, ", "), r.Wave.Name, sites[0], first.Message)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// WatchRound folds one round of the watch into the statuses of a wave that succeeded (the
// watch holds them as r) and returns the sites that degraded, in the round's order, by the
// rules of a wave's own rounds. A round that could not measure a site breaks its streak of
// failed rounds, as in a wave (Wave.Afresh). It changes r's statuses in place.
func (r *Wave) WatchRound(e HealthObserved) []string {
	r.Afresh = true
	return r.fold(e, isWatched)
}

// isWatched reports whether a health round observes the site (rollout.SiteStatus.Watched).
func isWatched(s *rollout.SiteStatus) bool { return s.Watched() }
