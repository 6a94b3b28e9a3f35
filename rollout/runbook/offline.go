package runbook

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// This file is the part of a wave's runbook for sites that go offline (the plan's
// health.offline with action defer, in an Evidence wave, versioned by the workflow: Wave.Offline).
//
//   - A site is Offline once fleetwave could not observe it for Offline.After: its status's
//     UnknownSince says since when.
//   - The wave probes its sites when it starts, and each batch before it is pushed
//     (ProbeSites). A batch waits for an unreachable site at most until it is Offline, and
//     without waiting for one found unreachable long enough before. An Offline site is
//     Deferred: the batch goes on without it, and nothing is pushed to its branch.
//   - A site that goes unreachable after its promotion was pushed, before it applied it, is
//     Deferred once Offline, and its promotion is withdrawn with a revert commit (RevertSites
//     with Withdraw), so that its branch holds no commit a gate did not pass. A site that goes
//     unreachable after it applied the promotion is not Offline: the health rules judge it
//     (Unknown, then Degraded after unknownTimeout).
//   - More Deferred sites than MaxDeferred fail the wave, closed.
//   - Deferred sites are observed with every health round of the wave; one that answers
//     rejoins it: it is promoted in a batch of its own after the plan's batches, converges, and
//     passes the gate as the others do (a clean round, then what is left of the bake).

// WaveProbe is the phase of a wave probing a batch's sites before their promotion.
const WaveProbe WavePhase = "Probe"

// WaveWithdraw is the phase of a wave withdrawing the promotions of sites that went offline
// before they applied them.
const WaveWithdraw WavePhase = "Withdraw"

// ProbeSites observes whether the sites can be reached, and until Until (zero: once) observes
// the unreachable ones again until they answer.
type ProbeSites struct {
	Sites []string
	Until time.Time `json:",omitzero"`
}

func (ProbeSites) waveStep() {}

// SitesProbed says which of the probed sites could not be reached (their last observation),
// at At; the other probed Sites answered.
type SitesProbed struct {
	At          time.Time
	Sites       []string
	Unreachable []rollout.SiteState `json:",omitempty"`
}

func (SitesProbed) waveEvent() {}

// defers reports whether the wave defers offline sites.
func (r Wave) defers() bool { return r.Offline && r.Evidence && r.Health.Defers() }

// deferBudget is how many of the wave's sites may be Deferred at once.
func (r Wave) deferBudget() int { return r.Health.Offline.MaxDeferred.Allowed(len(r.Wave.Sites)) }

// deferredCount counts the wave's Deferred sites.
func (r Wave) deferredCount() int { return countVerdict(r.Status.Sites, rollout.VerdictDeferred) }

func countVerdict(sites []rollout.SiteStatus, v rollout.Verdict) int {
	n := 0
	for _, s := range sites {
		if s.Verdict == v {
			n++
		}
	}
	return n
}

// deferredSites lists the wave's Deferred sites, which health rounds observe to see them back.
func (r Wave) deferredSites() []string {
	if !r.defers() {
		return nil
	}
	var out []string
	for _, s := range r.Status.Sites {
		if s.Verdict == rollout.VerdictDeferred {
			out = append(out, s.Name)
		}
	}
	return out
}

// startProbe probes every site of the wave as it starts, so that a site offline from the start
// is known to be before its batch comes.
func (r Wave) startProbe(now time.Time) (Wave, WaveStep) {
	r.Phase = WaveProbe
	r.Status.State = rollout.StatePromoting
	return r, ProbeSites{Sites: slices.Clone(r.Wave.Sites)}
}

// probeBatch probes the sites of the batch about to be promoted.
func (r Wave) probeBatch(now time.Time) (Wave, WaveStep) {
	r.Phase = WaveProbe
	r.Status.State = rollout.StatePromoting
	return r, ProbeSites{Sites: r.batchPending()}
}

// batchPending lists the sites of the batch to promote that are still to be promoted.
func (r Wave) batchPending() []string {
	var out []string
	for _, name := range r.Batches[r.Batch] {
		if s := r.Site(name); s != nil && s.Verdict == rollout.VerdictPending {
			out = append(out, name)
		}
	}
	return out
}

// probed folds what a probe saw into the sites' UnknownSince, then decides the batch: its
// reachable sites are promoted, its Offline ones deferred, and for the others, unreachable
// for less than Offline.After, the probe goes on until the first of them would be Offline.
func (r Wave) probed(e SitesProbed) (Wave, WaveStep) {
	if r.Aborted {
		return r.abort(e.At)
	}
	down := make(map[string]rollout.SiteState, len(e.Unreachable))
	for _, st := range e.Unreachable {
		down[st.Site] = st
	}
	for _, name := range e.Sites {
		s := r.Site(name)
		if s == nil || s.Verdict != rollout.VerdictPending {
			continue
		}
		if _, ok := down[name]; !ok {
			s.UnknownSince = time.Time{}
		} else if s.UnknownSince.IsZero() {
			s.UnknownSince = e.At
		}
	}
	if r.Batch >= len(r.Batches) || r.Paused {
		// A pause holds the wave here, a safe point; the batch is probed again on resume.
		return r.promoteNext(e.At)
	}
	after := r.Health.Offline.After
	var ready, offline []string
	var until time.Time
	for _, name := range r.batchPending() {
		s := r.Site(name)
		switch {
		case s.UnknownSince.IsZero():
			ready = append(ready, name)
		case e.At.Sub(s.UnknownSince) >= after:
			offline = append(offline, name)
		default:
			if at := s.UnknownSince.Add(after); until.IsZero() || at.Before(until) {
				until = at
			}
		}
	}
	if len(offline) > 0 {
		for _, name := range offline {
			s := r.Site(name)
			s.Verdict, s.UpdatedAt = rollout.VerdictDeferred, e.At
			s.Message = fmt.Sprintf("offline when its batch was promoted: unreachable for %s (offline.after %s): %s; deferred, nothing pushed",
				rough(e.At.Sub(s.UnknownSince)), after, down[name].Message)
		}
		if failed, step := r.overDeferred(e.At, offline); failed {
			return r, step
		}
	}
	if !until.IsZero() {
		// Some sites may still answer: probe them again until the first would be Offline,
		// or until the next health round of the sites converged so far.
		r.Status.Message = fmt.Sprintf("batch %d: waiting up to %s for %s to answer", r.Batch+1,
			rough(until.Sub(e.At)), rollout.SitesLabel(r.waitingSites(e.At)))
		if r.roundDue(e.At) {
			return r, ObserveHealth{Sites: r.roundSites()}
		}
		return r, ProbeSites{Sites: r.batchPending(), Until: r.sliceEnd(e.At, until)}
	}
	if r.Status.State == rollout.StatePromoting && strings.HasPrefix(r.Status.Message, "batch ") {
		r.Status.Message = ""
	}
	if len(ready) == 0 {
		r.Batch++
		return r.promoteNext(e.At)
	}
	r.Phase = WavePromote
	return r, PromoteSites{Batch: r.Batch, Sites: ready}
}

// waitingSites lists the batch's sites a probe waits for.
func (r Wave) waitingSites(now time.Time) []string {
	var out []string
	for _, name := range r.batchPending() {
		if !r.Site(name).UnknownSince.IsZero() {
			out = append(out, name)
		}
	}
	return out
}

// overDeferred fails the wave when more of its sites are Deferred than maxDeferred allows.
func (r *Wave) overDeferred(now time.Time, sites []string) (bool, WaveStep) {
	n, budget := r.deferredCount(), r.deferBudget()
	if n <= budget {
		for _, name := range sites {
			r.Site(name).Message += fmt.Sprintf(" (%d of maxDeferred %d)", n, budget)
		}
		return false, nil
	}
	first := r.Site(sites[0])
	reason := fmt.Sprintf("%s of wave %s offline, more than health.offline.maxDeferred (%s = %d): %s: %s",
		rollout.Count(n, "site"), r.Wave.Name, r.Health.Offline.MaxDeferred, budget, sites[0], first.Message)
	var step WaveStep
	*r, step = r.fail(now, reason)
	return true, step
}

// offlineAt reports whether the convergence c shows its site Offline at now: unreachable
// since before now − Offline.After.
func (r Wave) offlineAt(c Convergence, now time.Time) bool {
	return r.defers() && !c.Converged && !c.State.Reachable && !c.Unreachable.IsZero() && now.Sub(c.Unreachable) >= r.Health.Offline.After
}

// withdraw defers the sites that went offline before they applied their promotions and
// withdraws the promotions; pending are the batch's other sites still converging.
func (r Wave) withdraw(now time.Time, sites []string, pending []Expect) (Wave, WaveStep) {
	for _, name := range sites {
		s := r.Site(name)
		s.Verdict, s.UpdatedAt = rollout.VerdictDeferred, now
		s.Message = fmt.Sprintf("offline before it applied %s: unreachable for %s (offline.after %s)",
			rollout.Short(s.Promotion), rough(now.Sub(s.UnknownSince)), r.Health.Offline.After)
	}
	if failed, step := r.overDeferred(now, sites); failed {
		// The promotions stay: the rollout reverts them by its rollback scope.
		for _, name := range sites {
			r.Site(name).Verdict = rollout.VerdictDegraded
		}
		return r, step
	}
	r.Pending = pending
	r.Then = WaveConverge
	if len(pending) == 0 {
		r.Then = WavePromote
		r.Batch++
	}
	r.Phase = WaveWithdraw
	reason := fmt.Sprintf("withdrawn: %s offline for %s (health.offline.after) before applying the promotion of wave %s",
		nameList(sites), r.Health.Offline.After, r.Wave.Name)
	return r, RevertSites{Sites: sites, Reason: reason, WriteOnly: true}
}

// withdrawn records the withdrawals written; a promotion that could not be withdrawn fails
// the wave: its branch would hold a commit no gate passed.
func (r Wave) withdrawn(e SitesReverted) (Wave, WaveStep) {
	for _, v := range e.Sites {
		s := r.Site(v.Site)
		if s == nil {
			continue
		}
		s.UpdatedAt = e.At
		switch {
		case v.Problem != "":
			s.Verdict = rollout.VerdictDegraded
			s.Message = "offline, and its promotion could not be withdrawn: " + v.Problem
			return r.fail(e.At, fmt.Sprintf("site %s of wave %s: %s", v.Site, r.Wave.Name, s.Message))
		case v.Revert == "":
			s.Promoted = false
			s.Message += "; nothing of this rollout on " + s.Branch + " to withdraw"
		default:
			s.Revert = v.Revert
			s.Message += "; promotion withdrawn by " + rollout.Short(v.Revert)
		}
	}
	return r.resume(e.At, r.Pending)
}

// rejoin puts the Deferred sites a health round saw answering back into the wave: they are
// promoted in a batch of their own once the batches before it are done.
func (r Wave) rejoin(e HealthObserved) (Wave, bool) {
	if !r.defers() || r.Aborted {
		return r, false
	}
	var back []string
	for _, st := range e.States {
		s := r.Site(st.Site)
		if s == nil || s.Verdict != rollout.VerdictDeferred || !st.Reachable {
			continue
		}
		s.Verdict, s.UpdatedAt, s.UnknownSince = rollout.VerdictPending, e.At, time.Time{}
		s.Promotion, s.Promoted, s.Revert, s.Revision = "", false, "", st.Revision
		s.Message = "back online: rejoins the wave"
		back = append(back, s.Name)
	}
	if len(back) == 0 {
		return r, false
	}
	r.Batches = append(slices.Clone(r.Batches), back)
	r.Rejoins = append(slices.Clone(r.Rejoins), back)
	return r, true
}

// deferredNote is what a wave that succeeded says of its Deferred sites.
func (r Wave) deferredNote() string {
	n := r.deferredCount()
	if n == 0 {
		return ""
	}
	var names []string
	for _, s := range r.Status.Sites {
		if s.Verdict == rollout.VerdictDeferred {
			names = append(names, s.Name)
		}
	}
	return fmt.Sprintf("%s deferred (offline): %s", rollout.Count(n, "site"), nameList(names))
}

// nameList names the first three sites, and says when there are more.
func nameList(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
}

// rough rounds a duration for a message: to the second, or to 10ms under 10s.
func rough(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Second)
}
