package runbook

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fleetwave/fleetwave/rollout"
)

// The machines against the oracle (oracle_test.go, the runbooks as they were before the gate
// cursor): random sequences of the events a workflow can feed them, each answering the step
// asked for or arriving at any time as a control, a vote, a report or the watch's stop, must
// give the same steps and effects, and the same status, from both.

// oraclePlan is one of the plans the random rollouts run: three waves of which some need an
// approval (of users, or of a group), with or without policies, each rollback scope, onTimeout
// pause or reject, with or without a Slack thread.
func oraclePlan(rng *rand.Rand) *rollout.Plan {
	p := &rollout.Plan{SiteBranch: "sites/{site}", Sites: []rollout.Site{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}},
		Waves: []rollout.Wave{
			{Name: "canary", Sites: []string{"a"}, MaxParallel: 1},
			{Name: "north", Sites: []string{"b", "c"}, MaxParallel: 2},
			{Name: "rest", Sites: []string{"d"}, MaxParallel: 1},
		},
		Health:   rollout.Health{ConvergenceTimeout: 5 * time.Minute, Interval: 30 * time.Second, FailureThreshold: 3},
		Rollback: rollout.Rollback{Automatic: rng.IntN(4) > 0, Scope: []string{rollout.ScopeSite, rollout.ScopeWave, rollout.ScopeAll}[rng.IntN(3)]},
	}
	if rng.IntN(2) == 0 {
		p.Health.Watch = "wave"
	}
	for i := range p.Waves {
		if rng.IntN(2) == 0 {
			continue
		}
		a := &rollout.Approval{Approvers: []string{"U1", "U2"}, Quorum: 1 + rng.IntN(3), Timeout: time.Hour,
			OnTimeout: []string{rollout.OnTimeoutPause, rollout.OnTimeoutReject}[rng.IntN(2)]}
		if rng.IntN(2) == 0 {
			a.Approvers = append(a.Approvers, "@sre")
		}
		if rng.IntN(3) == 0 {
			a.Quorum = 3 // more than the users: met only with a group's members
		}
		if rng.IntN(3) == 0 {
			a.RemindBefore = 10 * time.Minute
		}
		p.Waves[i].Approval = a
	}
	if rng.IntN(3) == 0 {
		p.Notify.Slack = &rollout.SlackNotify{Channel: "#deploys"}
	}
	return p
}

// rolloutWorld answers the rollout's steps at random.
type rolloutWorld struct {
	rng *rand.Rand
	now time.Time
}

func (w *rolloutWorld) tick() time.Time {
	w.now = w.now.Add(time.Duration(1+w.rng.IntN(600)) * time.Second)
	return w.now
}

// answer is the event that ends step c, or nil when only a control can end it (a hold).
func (w *rolloutWorld) answer(o oldRollout, c any) Event {
	rng := w.rng
	switch c := c.(type) {
	case LoadPlan:
		if rng.IntN(20) == 0 {
			return StepFailed{At: w.tick(), Message: "no plan"}
		}
		return PlanLoaded{At: w.tick(), Plan: oraclePlan(rng), Commit: "abc1234", Subject: "bump", Policies: rng.IntN(2) == 0, Simulated: rng.IntN(2) == 0}
	case EvaluatePolicies:
		switch rng.IntN(10) {
		case 0:
			return StepFailed{At: w.tick(), Message: "rego error"}
		case 1:
			return PolicyDecided{At: w.tick(), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyDeny, Deny: []string{"frozen"}}}
		case 2, 3:
			return PolicyDecided{At: w.tick(), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyWait, WaitUntil: w.now.Add(time.Hour), Reasons: []string{"soak"}}}
		}
		return PolicyDecided{At: w.tick(), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyAllow}}
	case WaitUntil:
		if !o.Interrupted(c) && c.At.After(w.now) {
			w.now = c.At
		}
		return Woke{At: w.tick()}
	case AwaitVotes:
		if !o.Interrupted(c) {
			w.now = w.now.Add(c.Timeout)
		}
		return Woke{At: w.tick()}
	case HoldPaused:
		if !o.Interrupted(c) {
			return nil
		}
		return Woke{At: w.tick()}
	case ResolveApprovers:
		switch rng.IntN(4) {
		case 0:
			return ApproversResolved{At: w.tick(), Err: "slack down"}
		case 1:
			return ApproversResolved{At: w.tick(), Members: []string{"U3"}, Unresolved: []string{"@ops: no such group"}}
		}
		return ApproversResolved{At: w.tick(), Members: []string{"U3", "U4", "U1"}, IDs: map[string]string{"sre": "S1"}}
	case RunWave:
		name := o.Plan.Waves[c.Index].Name
		sites := o.Plan.Waves[c.Index].Sites
		switch rng.IntN(6) {
		case 0:
			return WaveEnded{At: w.tick(), Lost: "terminated"}
		case 1, 2:
			ws := waveFailed(name, sites...)
			return WaveEnded{At: w.tick(), Status: ws, Failed: "site " + sites[0] + " degraded in wave " + name}
		case 3:
			if o.Stop != rollout.StopNone {
				ws := waveDone(name, sites...)
				ws.State = rollout.StateAborted
				return WaveEnded{At: w.tick(), Status: ws}
			}
		}
		return WaveEnded{At: w.tick(), Status: waveDone(name, sites...)}
	case RevertWave, RevertLate:
		var set rollout.RevertSet
		if r, ok := c.(RevertWave); ok {
			set = r.Set
		} else {
			set = c.(RevertLate).Set
		}
		if rng.IntN(10) == 0 {
			return Reverted{At: w.tick(), Err: "git down"}
		}
		e := Reverted{At: w.tick()}
		for _, s := range set.Sites {
			v := Reversion{Site: s, Revert: "r-" + s, Converged: rng.IntN(4) > 0}
			switch rng.IntN(6) {
			case 0:
				v.Revert = ""
			case 1:
				v.Revert, v.Problem = "", "conflict"
			}
			e.Sites = append(e.Sites, v)
		}
		return e
	}
	panic(fmt.Sprintf("no answer to %T", c))
}

// anytime is an event that may come whatever the step: an accepted control, a vote, a report
// of the running wave, the watch's stop; nil when none fits now.
func (w *rolloutWorld) anytime(o oldRollout) Event {
	rng := w.rng
	switch rng.IntN(5) {
	case 0, 1:
		a := []ControlAction{ControlPause, ControlResume, ControlAbort, ControlRollback, ControlSupersede}[rng.IntN(5)]
		if a != ControlSupersede && o.CheckControl(a) != nil {
			return nil // refused by the update's validator
		}
		return Controlled{Control: rollout.Control{Action: string(a), By: "U1", At: w.tick(), Reason: "because"}}
	case 2:
		user := []string{"U1", "U2", "U3", "U9"}[rng.IntN(4)]
		wave := []string{"", "north", "rest"}[rng.IntN(3)]
		if o.CheckVote(wave, user, w.now) != nil {
			return nil
		}
		return VoteCast{Wave: wave, Vote: rollout.Vote{By: user, Approve: rng.IntN(4) > 0, At: w.tick()}}
	case 3:
		if o.Plan == nil {
			return nil
		}
		return WaveProgressed{Change: rollout.WaveChange{Wave: o.Status.Wave, State: rollout.StateBaking}}
	}
	if o.Plan == nil || o.Wave == 0 {
		return nil
	}
	return WatchDegraded{At: w.tick(), Wave: o.Plan.Waves[rng.IntN(o.Wave)].Name, Site: "a", Message: "failing"}
}

// stepOf is the step among commands, if any.
func stepOf(cmds []any) any {
	for _, c := range cmds {
		if _, ok := c.(Step); ok {
			return c
		}
	}
	return nil
}

func TestRolloutAgreesWithTheOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 12))
	opts := cmp.Options{cmpopts.EquateEmpty()}
	for i := range 1500 {
		watching := i%2 == 0
		o := oldNewRollout("rollout/demo/abc1234", "demo", "abc1234")
		o.Watching = watching
		n := NewRollout("rollout/demo/abc1234", "demo", "abc1234")
		n.Watching = watching
		w := &rolloutWorld{rng: rng, now: t0}
		var trail []string
		var step any
		feed := func(e Event) {
			trail = append(trail, fmt.Sprintf("%T%+v", e, e))
			var oc []any
			o, oc = oldNext(o, e)
			var got []any
			n, got = next(n, e)
			old := oc
			if diff := cmp.Diff(old, got, opts); diff != "" {
				t.Fatalf("run %d: commands differ (-oracle +new) after\n%s\n%s", i, strings.Join(trail, "\n"), diff)
			}
			if diff := cmp.Diff(o.Status, n.Status, opts); diff != "" {
				t.Fatalf("run %d: status differs (-oracle +new) after\n%s\n%s", i, strings.Join(trail, "\n"), diff)
			}
			type common struct {
				Phase              string
				Waits              int
				Kept               []rollout.Vote
				Failure, FailCause string
				Stop               rollout.StopCause
				ResumeState        rollout.State
				Policies, Watching bool
				WatchWave          int
			}
			oc2 := common{string(o.Phase), o.Waits, o.Kept, o.Failure, o.FailCause, o.Stop, o.ResumeState, o.Policies, o.Watching, o.WatchWave}
			nc2 := common{string(n.Phase), n.Waits, n.Kept, n.Failure, n.FailCause, n.Stop, n.ResumeState, n.Policies, n.Watching, n.WatchWave}
			if g := n.At.Gate; g != GatePolicy && g != GateRecheck {
				// Waits counts at a policies' gate; the oracle carried it into the approval.
				oc2.Waits, nc2.Waits = 0, 0
			}
			if diff := cmp.Diff(oc2, nc2, opts); diff != "" {
				t.Fatalf("run %d: runbook state differs (-oracle +new) after\n%s\n%s", i, strings.Join(trail, "\n"), diff)
			}
			if s := stepOf(old); s != nil {
				step = s
			}
		}
		feed(Started{At: t0})
		for range 200 {
			if o.Phase == oldPhaseDone {
				break
			}
			if rng.IntN(3) == 0 {
				if e := w.anytime(o); e != nil {
					feed(e)
					continue
				}
			}
			if e := w.answer(o, step); e != nil {
				feed(e)
			}
		}
		if o.Phase != oldPhaseDone {
			t.Fatalf("run %d: not done after 200 events:\n%s", i, strings.Join(trail, "\n"))
		}
	}
}

// next runs the rollout's machine and lists what it returned as the oracle does: the effects,
// then the step.
func next(r Rollout, e Event) (Rollout, []any) {
	r, step, effects := r.Next(e)
	var out []any
	for _, c := range effects {
		out = append(out, c)
	}
	if step != nil {
		out = append(out, step)
	}
	return r, out
}

// waveWorld answers the wave's steps at random.
type waveWorld struct {
	rng *rand.Rand
	now time.Time
}

func (w *waveWorld) tick(max time.Duration) time.Time {
	w.now = w.now.Add(time.Duration(1 + w.rng.Int64N(int64(max))))
	return w.now
}

// state is a random observation of a site at commit.
func (w *waveWorld) state(site, commit string) rollout.SiteState {
	switch w.rng.IntN(8) {
	case 0:
		return rollout.SiteState{Site: site, Message: "connection refused"}
	case 1, 2:
		return failing(site, commit)
	case 3:
		st := healthy(site, commit)
		st.Stalled, st.Ready, st.Message = true, false, "kustomize build failed"
		return st
	}
	return healthy(site, commit)
}

// answer is the event that ends step c, or nil when only a control can end it (a hold).
func (w *waveWorld) answer(o oldWave, c WaveStep) WaveEvent {
	rng := w.rng
	switch c := c.(type) {
	case PromoteSites:
		e := BatchPromoted{}
		for _, s := range c.Sites {
			e.Sites = append(e.Sites, Promotion{Site: s, Commit: "p-" + s, Previous: "old-" + s, Ours: rng.IntN(8) > 0})
		}
		switch rng.IntN(12) {
		case 0:
			e.Failure, e.Sites = "push refused", e.Sites[:rng.IntN(len(e.Sites)+1)]
		case 1:
			if o.Aborted {
				e.Cancelled = true
			}
		}
		e.At = w.tick(time.Minute)
		return e
	case AwaitConvergence:
		if rng.IntN(15) == 0 {
			return StepFailed{At: w.tick(time.Minute), Message: "kube down"}
		}
		if o.Aborted && rng.IntN(2) == 0 {
			return StepCancelled{At: w.tick(time.Minute)}
		}
		e := SitesConverged{}
		for _, x := range c.Sites {
			cv := Convergence{Site: x.Site, State: w.state(x.Site, x.Commit)}
			cv.Converged = rng.IntN(3) > 0 && cv.State.Ready
			e.Sites = append(e.Sites, cv)
		}
		if rng.IntN(3) == 0 {
			e.TimedOut = true
			if c.Deadline.After(w.now) {
				w.now = c.Deadline
			}
		}
		e.At = w.tick(time.Minute)
		return e
	case ObserveHealth:
		started := w.tick(time.Second)
		e := HealthObserved{Started: started}
		for _, s := range c.Sites {
			e.States = append(e.States, w.state(s, o.Site(s).Promotion))
		}
		if rng.IntN(10) == 0 {
			e.States = nil // a round that lost its sites' answers
		}
		e.At = w.tick(30 * time.Second)
		return e
	case SleepUntil:
		if c.At.After(w.now) {
			w.now = c.At
		}
		return WaveTick{At: w.tick(time.Second)}
	case HoldPaused:
		if c.Until.IsZero() {
			return nil
		}
		if c.Until.After(w.now) {
			w.now = c.Until
		}
		return WaveTick{At: w.tick(time.Second)}
	case RevertSites:
		if rng.IntN(15) == 0 {
			return StepFailed{At: w.tick(time.Minute), Message: "git down"}
		}
		e := SitesReverted{}
		for _, s := range c.Sites {
			v := Reversion{Site: s, Revert: "r-" + s, Head: "r-" + s, Converged: rng.IntN(3) > 0}
			switch rng.IntN(6) {
			case 0:
				v.Revert = ""
			case 1:
				v.Revert, v.Problem = "", "conflict"
			}
			e.Sites = append(e.Sites, v)
		}
		e.At = w.tick(time.Minute)
		return e
	}
	panic(fmt.Sprintf("no answer to %T", c))
}

func TestWaveAgreesWithTheOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 24))
	opts := cmp.Options{cmpopts.EquateEmpty(), cmp.AllowUnexported(Wave{}), cmpopts.IgnoreFields(Wave{}, "index")}
	for i := range 1500 {
		sites := []string{"a", "b", "c", "d", "e"}[:1+rng.IntN(5)]
		pw := rollout.Wave{Name: "eu", Sites: sites, MaxParallel: 1 + rng.IntN(3),
			Bake:        []time.Duration{0, 30 * time.Second, 5 * time.Minute, 20 * time.Minute}[rng.IntN(4)],
			MaxFailures: rollout.FailureBudget{Count: rng.IntN(3)}}
		h := rollout.Health{ConvergenceTimeout: 5 * time.Minute, Interval: time.Minute, FailureThreshold: 1 + rng.IntN(3), UnknownTimeout: 3 * time.Minute}
		st := rollout.WaveStatus{Name: "eu", State: rollout.StatePending}
		for _, s := range sites {
			st.Sites = append(st.Sites, rollout.SiteStatus{Name: s, Branch: "sites/" + s, Verdict: rollout.VerdictPending})
		}
		automatic := rng.IntN(4) > 0
		o := oldNewWave("rollout/demo/abc1234", "abc1234", pw, h, automatic, st)
		n := NewWave("rollout/demo/abc1234", "abc1234", pw, h, automatic, st)
		o.Afresh, n.Afresh = i%2 == 0, i%2 == 0
		o.Evidence, n.Evidence = i%3 != 0, i%3 != 0
		w := &waveWorld{rng: rng, now: t0}
		var trail []string
		var step WaveStep
		feed := func(e WaveEvent) {
			trail = append(trail, fmt.Sprintf("%T%+v", e, e))
			var oc WaveStep
			o, oc = oldNextWave(o, e)
			var nc WaveStep
			n, nc = nextWave(n, e)
			if diff := cmp.Diff(oc, nc, opts); diff != "" {
				t.Fatalf("run %d: steps differ (-oracle +new) after\n%s\n%s", i, strings.Join(trail, "\n"), diff)
			}
			if diff := cmp.Diff(o.Status, n.Status, opts); diff != "" {
				t.Fatalf("run %d: status differs (-oracle +new) after\n%s\n%s", i, strings.Join(trail, "\n"), diff)
			}
			if diff := cmp.Diff(o.Resume(), n.Resume(), opts); diff != "" {
				t.Fatalf("run %d: runbook state differs (-oracle +new) after\n%s\n%s", i, strings.Join(trail, "\n"), diff)
			}
			if oc != nil {
				step = oc
			}
		}
		feed(WaveStarted{At: t0})
		for range 300 {
			if o.Phase == WaveDone {
				break
			}
			if rng.IntN(6) == 0 {
				a := []ControlAction{ControlPause, ControlResume, ControlAbort, ControlSupersede}[rng.IntN(4)]
				feed(WaveControl{At: w.tick(time.Second), Action: a})
				continue
			}
			if e := w.answer(o, step); e != nil {
				feed(e)
			}
		}
	}
}

// nextWave runs the new wave machine.
func nextWave(r Wave, e WaveEvent) (Wave, WaveStep) {
	r, step, _ := r.Next(e)
	return r, step
}
