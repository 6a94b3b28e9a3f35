package runbook

import (
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// watchPlan: canary (a), north (b, c), rest (d); scope as given.
func watchPlan(scope string) *rollout.Plan {
	return &rollout.Plan{SiteBranch: "sites/{site}", Sites: []rollout.Site{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}},
		Waves: []rollout.Wave{
			{Name: "canary", Sites: []string{"a"}, MaxParallel: 1},
			{Name: "north", Sites: []string{"b", "c"}, MaxParallel: 2},
			{Name: "rest", Sites: []string{"d"}, MaxParallel: 1},
		},
		Health:   rollout.Health{ConvergenceTimeout: 5 * time.Minute, Interval: 30 * time.Second, FailureThreshold: 3},
		Rollback: rollout.Rollback{Automatic: true, Scope: scope},
	}
}

// watchRun feeds events to a new rollout that watches (the workflow's version says so).
func watchRun(watching bool, events ...Event) (Rollout, []any) {
	r := NewRollout("rollout/demo/abc1234", "demo", "abc1234")
	r.Watching = watching
	var cmds []any
	for _, e := range events {
		r, cmds = next(r, e)
	}
	return r, cmds
}

func TestWatch(t *testing.T) {
	loaded := func(scope string) []Event {
		return []Event{Started{At: t0}, PlanLoaded{At: at(time.Second), Plan: watchPlan(scope), Commit: "abc1234"}}
	}
	canaryOK := WaveEnded{At: at(10 * time.Minute), Status: waveDone("canary", "a")}
	degraded := WatchDegraded{At: at(25 * time.Minute), Wave: "canary", Site: "a", Message: "check error-rate failed (value 0.2, want <= 0.01), 3 times in a row"}
	northAborted := func() WaveEnded {
		ws := waveDone("north", "b", "c")
		ws.State = rollout.StateAborted
		return WaveEnded{At: at(26 * time.Minute), Status: ws}
	}
	tests := []struct {
		name     string
		watching bool
		events   []Event
		want     string
		state    rollout.State
		check    func(t *testing.T, r Rollout)
	}{
		{name: "a wave that succeeded is watched while the next runs", watching: true, events: then(loaded(rollout.ScopeWave), canaryOK),
			want: "post wave-finished canary; WatchSites; state Promoting; post wave-started north; run wave 1", state: rollout.StatePromoting},
		{name: "recorded rollouts watch nothing", watching: false, events: then(loaded(rollout.ScopeWave), canaryOK),
			want: "post wave-finished canary; state Promoting; post wave-started north; run wave 1", state: rollout.StatePromoting},
		{name: "the last wave needs no watch", watching: true,
			events: then(loaded(rollout.ScopeWave), canaryOK, WaveEnded{At: at(20 * time.Minute), Status: waveDone("north", "b", "c")}, WaveEnded{At: at(30 * time.Minute), Status: waveDone("rest", "d")}),
			want:   "post wave-finished rest; state Succeeded; StopWatches; finish Succeeded", state: rollout.StateSucceeded},
		{name: "a watched site that degrades aborts the running wave", watching: true, events: then(loaded(rollout.ScopeWave), canaryOK, degraded),
			want: "forward abort", state: rollout.StatePromoting,
			check: func(t *testing.T, r Rollout) {
				if a := r.Status.Waves[0].Sites[0]; a.Verdict != rollout.VerdictDegraded || r.Status.Waves[0].State != rollout.StateSucceeded {
					t.Errorf("canary %s, a %s: want the wave's record Succeeded and a Degraded", r.Status.Waves[0].State, a.Verdict)
				}
				if err := r.CheckControl(ControlRollback); err == nil {
					t.Error("a rollout stopping for its watch took another control")
				}
			}},
		{name: "scope wave: the degraded site's wave and the aborted wave are reverted, the rollout fails", watching: true,
			events: then(loaded(rollout.ScopeWave), canaryOK, degraded, northAborted()),
			want:   "post wave-finished north; StopWatches; state RollingBack; revert north:b,c", state: rollout.StateRollingBack},
		{name: "then the canary", watching: true,
			events: then(loaded(rollout.ScopeWave), canaryOK, degraded, northAborted(), Reverted{At: at(27 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}, {Site: "c", Revert: "r-c", Converged: true}}}),
			want:   "post reverted north; revert canary:a", state: rollout.StateRollingBack},
		{name: "and the rollout fails naming the site and its wave", watching: true,
			events: then(loaded(rollout.ScopeWave), canaryOK, degraded, northAborted(), Reverted{At: at(27 * time.Minute), Sites: []Reversion{{Site: "b", Revert: "r-b", Converged: true}, {Site: "c", Revert: "r-c", Converged: true}}},
				Reverted{At: at(28 * time.Minute), Sites: []Reversion{{Site: "a", Revert: "r-a", Converged: true}}}),
			want:  "post reverted canary; state Failed; StopWatches; finish Failed site a of wave canary degraded after its wave succeeded: check error-rate failed (value 0.2, want <= 0.01), 3 times in a row",
			state: rollout.StateFailed,
			check: func(t *testing.T, r Rollout) {
				if r.Status.Cause != rollout.CauseWatchDegraded {
					t.Errorf("cause %q, want %s", r.Status.Cause, rollout.CauseWatchDegraded)
				}
				if d := r.Status.Waves[2]; d.State != rollout.StatePending || d.Sites != nil && d.Sites[0].Promoted {
					t.Errorf("rest %s: want it untouched", d.State)
				}
			}},
		{name: "scope site: only the degraded site", watching: true, events: then(loaded(rollout.ScopeSite), canaryOK, degraded, northAborted()),
			want: "post wave-finished north; StopWatches; state RollingBack; revert canary:a", state: rollout.StateRollingBack},
		{name: "scope all: every wave so far, last first", watching: true, events: then(loaded(rollout.ScopeAll), canaryOK, degraded, northAborted()),
			want: "post wave-finished north; StopWatches; state RollingBack; revert north:b,c", state: rollout.StateRollingBack},
		{name: "between waves (a policy wait) the rollout reverts at once", watching: true,
			events: then([]Event{Started{At: t0}, PlanLoaded{At: at(time.Second), Plan: watchPlan(rollout.ScopeWave), Commit: "abc1234", Policies: true}},
				allow(time.Minute), canaryOK, PolicyDecided{At: at(11 * time.Minute), Decision: rollout.PolicyDecision{Outcome: rollout.PolicyWait, WaitUntil: at(time.Hour)}}, degraded, Woke{At: at(25 * time.Minute)}),
			want: "StopWatches; state RollingBack; revert canary:a", state: rollout.StateRollingBack},
		{name: "a degradation reported after the rollout ended is ignored", watching: true,
			events: then(loaded(rollout.ScopeWave), canaryOK, WaveEnded{At: at(20 * time.Minute), Status: waveDone("north", "b", "c")}, WaveEnded{At: at(30 * time.Minute), Status: waveDone("rest", "d")}, degraded),
			want:   "", state: rollout.StateSucceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, cmds := watchRun(tt.watching, tt.events...)
			if got := describe(cmds); got != tt.want {
				t.Errorf("commands:\n got %s\nwant %s", got, tt.want)
			}
			if r.Status.State != tt.state {
				t.Errorf("state %s, want %s", r.Status.State, tt.state)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestWatchRound(t *testing.T) {
	h := rollout.Health{Interval: 30 * time.Second, FailureThreshold: 2, UnknownTimeout: time.Minute}
	ws := *waveDone("canary", "a", "b")
	ws.Sites = append(ws.Sites, rollout.SiteStatus{Name: "r", Verdict: rollout.VerdictReverted, Promotion: "p-r"})
	w := NewWave("rollout/demo/abc1234", "abc1234", rollout.Wave{Name: "canary", Sites: []string{"a", "b", "r"}}, h, false, ws)
	if got := w.WatchRound(round(time.Minute, failing("a", "p-a"), healthy("b", "p-b"), failing("r", "p-r"))); len(got) != 0 {
		t.Fatalf("one failed round degraded %v", got)
	}
	if got := w.WatchRound(round(2*time.Minute, failing("a", "p-a"), healthy("b", "p-b"), failing("r", "p-r"))); len(got) != 1 || got[0] != "a" {
		t.Fatalf("two failed rounds: %v, want a", got)
	}
	if got := w.Status.WatchedSites(); len(got) != 1 || got[0] != "b" {
		t.Errorf("watched after a degraded: %v, want b (a decided, r reverted)", got)
	}
}
