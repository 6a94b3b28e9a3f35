package sim

import (
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
)

// scriptLab is a lab whose fleet runs faults; the rollout's commit is on main and starts at
// the lab clock's start, on a time scale of 60 (a minute of the plan is a second).
func scriptLab(t *testing.T, faults ...rollout.Fault) (*lab, string) {
	t.Helper()
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	// The commit exists before the fleet: the lab's server is made first, then the script.
	var commit string
	l := newLab(t, func(f *Fleet) {
		f.script = &Script{Faults: faults, Start: start, Scale: 60}
	})
	commit = l.commitOn("main", "app v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	l.fleet.script.Commit = commit
	if err := l.fleet.CheckScript(); err != nil {
		t.Fatal(err)
	}
	return l, commit
}

// promote writes a promotion of commit on the site's branch, as fleetwave writes it (the tree
// does not matter to the script, the trailer does).
func (l *lab) promote(site, commit string) string {
	l.t.Helper()
	return l.commitOn("sites/"+site, "Promote\n\n"+gitops.TrailerRollout+": r1\n"+gitops.TrailerSource+": "+commit+"\n",
		map[string]string{"apps/app.yaml": "version: 2\n"})
}

func TestScriptDegradeAndFlap(t *testing.T) {
	t.Parallel()
	l, commit := scriptLab(t,
		rollout.Fault{Degrade: &rollout.DegradeFault{Sites: []string{"ams-1"}, After: 10 * time.Minute}},
		rollout.Fault{Flap: &rollout.FlapFault{Sites: []string{"ams-2"}, Period: 2 * time.Minute}})
	if st := l.observe("ams-1"); !checksOK(st) {
		t.Fatalf("ams-1 before the promotion: %+v", st)
	}
	l.promote("ams-1", commit)
	l.promote("ams-2", commit)
	l.step()
	l.clock.Advance(DefaultReconcileDelay)
	l.step() // both apply the promotion now, at 1s (1m on the plan's scale)
	if st := l.observe("ams-1"); !checksOK(st) {
		t.Errorf("ams-1 before its degrade's 10m: %+v", st)
	}
	l.clock.Advance(9 * time.Second) // 10m on the plan's scale
	if st := l.observe("ams-1"); checksOK(st) || !strings.Contains(st.Checks[0].Message, "degraded on the rollout's commit from 10m0s") {
		t.Errorf("ams-1 after 10m: %+v, want failing", st)
	}
	// ams-2 applied at 1s; it flaps every 2s: healthy in [1s,3s), failing in [3s,5s), healthy again.
	for _, c := range []struct {
		at      time.Duration
		healthy bool
	}{{2 * time.Second, true}, {3 * time.Second, false}, {4900 * time.Millisecond, false}, {5 * time.Second, true}} {
		l.clock.now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).Add(c.at)
		if st := l.observe("ams-2"); checksOK(st) != c.healthy {
			t.Errorf("ams-2 at %s: healthy %v, want %v (%+v)", c.at, checksOK(st), c.healthy, st.Checks)
		}
	}
	// Reverted, ams-1 no longer runs the rollout's commit: healthy.
	l.commitOn("sites/ams-1", "Revert", map[string]string{"apps/app.yaml": "version: 1\n"})
	l.step()
	l.clock.Advance(DefaultReconcileDelay)
	l.step()
	if st := l.observe("ams-1"); !checksOK(st) {
		t.Errorf("ams-1 after its revert: %+v", st)
	}
	effects := l.fleet.Effects()
	if len(effects) != 2 || effects[0].Site != "ams-1" || effects[1].Site != "ams-2" {
		t.Errorf("effects = %+v", effects)
	}
}

func TestScriptUnreachableWindow(t *testing.T) {
	t.Parallel()
	l, _ := scriptLab(t, rollout.Fault{Unreachable: &rollout.UnreachableFault{Sites: []string{"ams-*"}, From: 5 * time.Minute, For: 10 * time.Minute}})
	start := l.clock.Now()
	for _, c := range []struct {
		at        time.Duration
		reachable bool
	}{{0, true}, {4999 * time.Millisecond, true}, {5 * time.Second, false}, {14999 * time.Millisecond, false}, {15 * time.Second, true}} {
		l.clock.now = start.Add(c.at)
		for _, s := range sites {
			if st := l.observe(s); st.Reachable != c.reachable {
				t.Errorf("%s at %s: reachable %v, want %v (%s)", s, c.at, st.Reachable, c.reachable, st.Message)
			}
		}
	}
}

func TestScriptSlowReconcile(t *testing.T) {
	t.Parallel()
	l, commit := scriptLab(t, rollout.Fault{SlowReconcile: &rollout.SlowReconcileFault{Sites: []string{"ams-1"}, P50: 30 * time.Second, P99: 4 * time.Minute}})
	p := l.promote("ams-1", commit)
	want := LogNormal(30*time.Second, 4*time.Minute, "ams-1@"+p) / 60
	l.step()
	l.clock.Advance(want - time.Millisecond)
	l.step()
	if st := l.observe("ams-1"); st.Converged(p) {
		t.Fatalf("ams-1 applied before its drawn delay %s", want)
	}
	l.clock.Advance(time.Millisecond)
	l.step()
	if st := l.observe("ams-1"); !st.Converged(p) {
		t.Errorf("ams-1 did not apply after its drawn delay %s: %+v", want, st)
	}
}

// LogNormal is deterministic, and its draws have the median and 99th percentile asked for.
func TestLogNormal(t *testing.T) {
	if a, b := LogNormal(time.Second, time.Minute, "a"), LogNormal(time.Second, time.Minute, "a"); a != b {
		t.Fatalf("not deterministic: %s then %s", a, b)
	}
	const n = 20000
	draws := make([]time.Duration, n)
	for i := range draws {
		draws[i] = LogNormal(30*time.Second, 4*time.Minute, "site-"+string(rune('a'+i%26))+"-"+time.Duration(i).String())
	}
	slices.Sort(draws)
	p50, p99 := draws[n/2], draws[n*99/100]
	if p50 < 27*time.Second || p50 > 33*time.Second || p99 < 3*time.Minute+20*time.Second || p99 > 4*time.Minute+40*time.Second {
		t.Errorf("p50 %s, p99 %s; want about 30s and 4m", p50, p99)
	}
}

// checksOK reports whether the site was observed with every check passing.
func checksOK(st rollout.SiteState) bool {
	for _, c := range st.Checks {
		if !c.OK {
			return false
		}
	}
	return st.Reachable && len(st.Checks) > 0
}

// A worker in another process observes the fleet through Remote exactly as it would directly.
func TestRemote(t *testing.T) {
	t.Parallel()
	l, commit := scriptLab(t, rollout.Fault{Degrade: &rollout.DegradeFault{Sites: []string{"ams-1"}}})
	l.promote("ams-1", commit)
	l.step()
	l.clock.Advance(DefaultReconcileDelay)
	l.step()
	srv := httptest.NewServer(l.fleet.Handler())
	t.Cleanup(srv.Close)
	remote := &Remote{URL: srv.URL}
	for _, s := range sites {
		got, err := remote.Observe(l.ctx, rollout.Site{Name: s})
		if err != nil {
			t.Fatal(err)
		}
		if want := l.observe(s); !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Errorf("%s through Remote:\n%+v\nwant\n%+v", s, got, want)
		}
	}
	srv.Close()
	if _, err := remote.Observe(l.ctx, rollout.Site{Name: "ams-1"}); err == nil {
		t.Error("no error with the fleet's process gone")
	}
}

// normalize drops the monotonic clock reading, which JSON does not carry.
func normalize(st rollout.SiteState) rollout.SiteState {
	st.ObservedAt = st.ObservedAt.Round(0)
	for i := range st.Checks {
		st.Checks[i].At = st.Checks[i].At.Round(0)
	}
	return st
}
