package runbook

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// edge is a fleet of edge sites for a wave that defers offline sites: a site is offline while
// down says so (it then neither answers nor fetches), and applies a commit 20 s after it was
// pushed, counted while it is online.
type edge struct {
	t    *testing.T
	down func(site string, now time.Time) bool
	// pushed: when each site's branch got its head; head: the head.
	pushed map[string]time.Time
	head   map[string]string
	// online counts how long each site was online since its head was pushed.
	applied map[string]string
	now     time.Time
	cmds    []WaveStep
}

func newEdge(t *testing.T, down func(string, time.Time) bool) *edge {
	return &edge{t: t, down: down, pushed: map[string]time.Time{}, head: map[string]string{}, applied: map[string]string{}, now: t0}
}

// advance moves the clock by d in steps of a second, applying what the online sites fetched.
func (w *edge) advance(d time.Duration) {
	for end := w.now.Add(d); w.now.Before(end); {
		w.now = minTime(w.now.Add(time.Second), end)
		for site, head := range w.head {
			if !w.down(site, w.now) && w.now.Sub(w.pushed[site]) >= 20*time.Second {
				w.applied[site] = head
			}
		}
	}
}

func (w *edge) state(site string) rollout.SiteState {
	if w.down(site, w.now) {
		return rollout.SiteState{Site: site, Message: "dial tcp: no route to host", ObservedAt: w.now}
	}
	return healthy(site, w.applied[site])
}

func (w *edge) push(site, commit string) {
	w.head[site], w.pushed[site] = commit, w.now
}

// run answers the wave's steps until it finishes.
func (w *edge) run(r Wave) Wave {
	w.t.Helper()
	var c WaveStep
	r, c, _ = r.Next(WaveStarted{At: w.now})
	for range 2000 {
		w.cmds = append(w.cmds, c)
		var e WaveEvent
		switch c := c.(type) {
		case FinishWave:
			return r
		case ProbeSites:
			for {
				ev := SitesProbed{At: w.now, Sites: c.Sites}
				for _, s := range c.Sites {
					if st := w.state(s); !st.Reachable {
						ev.Unreachable = append(ev.Unreachable, st)
					}
				}
				if len(ev.Unreachable) == 0 || !w.now.Before(c.Until) {
					e = ev
					break
				}
				w.advance(2 * time.Second)
			}
		case PromoteSites:
			w.advance(time.Second)
			ev := BatchPromoted{At: w.now}
			for _, s := range c.Sites {
				commit := "p-" + s
				if slices.ContainsFunc(w.cmds[:len(w.cmds)-1], func(x WaveStep) bool {
					p, ok := x.(PromoteSites)
					return ok && slices.Contains(p.Sites, s)
				}) {
					commit = "p2-" + s // promoted again after a withdrawal
				}
				w.push(s, commit)
				ev.Sites = append(ev.Sites, Promotion{Site: s, Commit: commit, Ours: true})
			}
			e = ev
		case AwaitConvergence:
			since := map[string]time.Time{}
			for _, x := range c.Sites {
				since[x.Site] = x.Unreachable
			}
			for {
				ev := SitesConverged{At: w.now}
				all, offline := true, false
				for _, x := range c.Sites {
					st := w.state(x.Site)
					ok := st.Reachable && w.applied[x.Site] == x.Commit
					all = all && ok
					if st.Reachable {
						since[x.Site] = time.Time{}
					} else if since[x.Site].IsZero() {
						since[x.Site] = w.now
					}
					if c.Offline > 0 && !since[x.Site].IsZero() && w.now.Sub(since[x.Site]) >= c.Offline {
						offline = true
					}
					ev.Sites = append(ev.Sites, Convergence{Site: x.Site, Converged: ok, State: st, Unreachable: since[x.Site]})
				}
				if all || offline {
					e = ev
					break
				}
				if !w.now.Before(c.Deadline) {
					ev.TimedOut = true
					e = ev
					break
				}
				w.advance(min(2*time.Second, c.Deadline.Sub(w.now)))
			}
		case ObserveHealth:
			w.advance(time.Second)
			ev := HealthObserved{At: w.now}
			for _, s := range c.Sites {
				ev.States = append(ev.States, w.state(s))
			}
			e = ev
		case SleepUntil:
			w.advance(c.At.Sub(w.now))
			e = WaveTick{At: w.now}
		case RevertSites:
			w.advance(time.Second)
			ev := SitesReverted{At: w.now}
			for _, s := range c.Sites {
				w.push(s, "r-"+s)
				ev.Sites = append(ev.Sites, Reversion{Site: s, Revert: "r-" + s, Head: "r-" + s})
			}
			e = ev
		default:
			w.t.Fatalf("unexpected step %T", c)
		}
		r, c, _ = r.Next(e)
	}
	w.t.Fatalf("the wave did not finish; last step %#v", c)
	return r
}

// edgeWave is a wave of a, b and c in batches [a b] [c], bake 10m, that defers offline sites
// after 2 minutes, at most maxDeferred of them.
func edgeWave(maxDeferred int) Wave {
	r := testWave(rollout.FailureBudget{})
	r.Evidence, r.Offline = true, true
	r.Health.ConvergenceTimeout = 10 * time.Minute
	r.Health.Offline = rollout.Offline{After: 2 * time.Minute, Action: rollout.OfflineDefer, MaxDeferred: rollout.FailureBudget{Count: maxDeferred}}
	return r
}

func promotedSites(cmds []WaveStep) []string {
	var out []string
	for _, c := range cmds {
		if p, ok := c.(PromoteSites); ok {
			out = append(out, p.Sites...)
		}
	}
	return out
}

// TestOfflineAtPromotionIsDeferred: c is offline from the start. Its batch waits for it until
// it has been unreachable for offline.after (2m from the wave's first probe), then goes on
// without it: nothing is pushed to c, the wave succeeds saying so, and it does not wait for
// convergenceTimeout (10m).
func TestOfflineAtPromotionIsDeferred(t *testing.T) {
	w := newEdge(t, func(site string, _ time.Time) bool { return site == "c" })
	r := w.run(edgeWave(1))
	if r.Status.State != rollout.StateSucceeded {
		t.Fatalf("wave %s (%s), want Succeeded", r.Status.State, r.Status.Message)
	}
	c := r.Site("c")
	if c.Verdict != rollout.VerdictDeferred || c.Promoted || c.Promotion != "" || !strings.Contains(c.Message, "offline when its batch was promoted") {
		t.Errorf("c: %s, promoted %v %q: %s; want Deferred, nothing pushed", c.Verdict, c.Promoted, c.Promotion, c.Message)
	}
	if got := promotedSites(w.cmds); slices.Contains(got, "c") {
		t.Errorf("promoted %v: c was pushed", got)
	}
	if !strings.Contains(r.Status.Message, "1 site deferred (offline): c") {
		t.Errorf("wave message %q, want it to say c was deferred", r.Status.Message)
	}
	// The bake (10m) starts once a and b converged; c's 2 minutes overlap it or precede it,
	// never convergenceTimeout.
	if took := r.Status.FinishedAt.Sub(t0); took > 13*time.Minute {
		t.Errorf("the wave took %s: it waited for the offline site", took)
	}

	// Without offline deferral (a wave recorded before it), c degrades at convergenceTimeout.
	w = newEdge(t, func(site string, _ time.Time) bool { return site == "c" })
	old := edgeWave(1)
	old.Offline = false
	r = w.run(old)
	if r.Status.State != rollout.StateFailed || r.Site("c").Verdict != rollout.VerdictDegraded {
		t.Errorf("without Offline: wave %s, c %s; want Failed, c Degraded", r.Status.State, r.Site("c").Verdict)
	}
}

// TestOfflineBeforeApplyIsWithdrawn: b answers the probe, its promotion is pushed, and it goes
// offline before it applied it. Two minutes later its promotion is withdrawn by a revert, the
// wave goes on, and b is Deferred.
func TestOfflineBeforeApplyIsWithdrawn(t *testing.T) {
	w := newEdge(t, func(site string, now time.Time) bool { return site == "b" && now.Sub(t0) >= 5*time.Second })
	r := w.run(edgeWave(1))
	if r.Status.State != rollout.StateSucceeded {
		t.Fatalf("wave %s (%s), want Succeeded", r.Status.State, r.Status.Message)
	}
	b := r.Site("b")
	if b.Verdict != rollout.VerdictDeferred || b.Revert != "r-b" || !strings.Contains(b.Message, "offline before it applied p-b") || !strings.Contains(b.Message, "withdrawn by r-b") {
		t.Errorf("b: %s, revert %q: %s; want Deferred, its promotion withdrawn", b.Verdict, b.Revert, b.Message)
	}
	var withdrawal *RevertSites
	for _, c := range w.cmds {
		if rs, ok := c.(RevertSites); ok {
			withdrawal = &rs
		}
	}
	if withdrawal == nil || !slices.Equal(withdrawal.Sites, []string{"b"}) || !strings.HasPrefix(withdrawal.Reason, "withdrawn: b offline for 2m0s") {
		t.Errorf("withdrawal %+v, want b's promotion reverted with the reason", withdrawal)
	}
	if a := r.Site("a"); a.Verdict != rollout.VerdictHealthy {
		t.Errorf("a %s, want Healthy", a.Verdict)
	}
}

// TestDeferredSiteRejoins: b goes offline after its push and comes back at 5m, during the bake.
// A health round sees it back: it is promoted again, converges and passes the gate, within
// what was left of the bake, which does not start again.
func TestDeferredSiteRejoins(t *testing.T) {
	w := newEdge(t, func(site string, now time.Time) bool {
		return site == "b" && now.Sub(t0) >= 5*time.Second && now.Sub(t0) < 5*time.Minute
	})
	r := w.run(edgeWave(1))
	if r.Status.State != rollout.StateSucceeded {
		t.Fatalf("wave %s (%s), want Succeeded", r.Status.State, r.Status.Message)
	}
	b := r.Site("b")
	if b.Verdict != rollout.VerdictHealthy || b.Promotion != "p2-b" || b.Revert != "" {
		t.Errorf("b: %s, promotion %q, revert %q: %s; want Healthy on its second promotion", b.Verdict, b.Promotion, b.Revert, b.Message)
	}
	if got := promotedSites(w.cmds); !slices.Equal(got, []string{"a", "b", "c", "b"}) {
		t.Errorf("promotions %v, want a b, then c, then b again", got)
	}
	if bake := r.Status.BakeUntil.Sub(r.Status.ConvergedAt); bake != 10*time.Minute {
		t.Errorf("bake %s, want 10m: the rejoin must not restart it", bake)
	}
	if strings.Contains(r.Status.Message, "deferred") {
		t.Errorf("wave message %q: b rejoined", r.Status.Message)
	}
	// The resumed state carries the rejoined batch.
	res := ResumeWave(r.Rollout, r.Commit, r.Wave, r.Health, true, r.Status, r.Resume())
	if len(res.Batches) != 3 || !slices.Equal(res.Batches[2], []string{"b"}) {
		t.Errorf("resumed batches %v, want the rejoin batch kept", res.Batches)
	}
}

// TestTooManyDeferredFailsClosed: with maxDeferred 0, the offline site fails the wave.
func TestTooManyDeferredFailsClosed(t *testing.T) {
	w := newEdge(t, func(site string, _ time.Time) bool { return site == "c" })
	r := w.run(edgeWave(0))
	if r.Status.State != rollout.StateFailed || !strings.Contains(r.Reason, "1 site of wave eu offline, more than health.offline.maxDeferred (0 = 0): c") {
		t.Fatalf("wave %s (%s), want Failed past maxDeferred", r.Status.State, r.Reason)
	}

	// After the push: b's promotion stays for the rollout's rollback to revert.
	w = newEdge(t, func(site string, now time.Time) bool { return site == "b" && now.Sub(t0) >= 5*time.Second })
	r = w.run(edgeWave(0))
	if r.Status.State != rollout.StateFailed {
		t.Fatalf("wave %s, want Failed", r.Status.State)
	}
	if b := r.Site("b"); !b.Promoted || b.Revert != "" || b.Verdict != rollout.VerdictDegraded {
		t.Errorf("b: promoted %v, revert %q, %s; want its promotion left for the rollback, Degraded", b.Promoted, b.Revert, b.Verdict)
	}
	if got := rollout.RevertOrder([]rollout.WaveStatus{r.Status}, 0, rollout.ScopeSite); len(got) != 1 || !slices.Contains(got[0].Sites, "b") {
		t.Errorf("revert order %+v, want b reverted by the rollback", got)
	}
}
