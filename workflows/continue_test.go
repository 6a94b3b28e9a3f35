package workflows

import (
	"crypto/sha1"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
)

// continueEvery makes a baking wave's history count as long at every n-th health round of a
// run, for one test (the test environment keeps no history to count).
func continueEvery(t *testing.T, n int) {
	old := historyLong
	sleeps := map[string]int{}
	historyLong = func(info *workflow.Info) bool {
		sleeps[info.WorkflowExecution.RunID]++
		return sleeps[info.WorkflowExecution.RunID] >= n
	}
	t.Cleanup(func() { historyLong = old })
}

// waveRuns counts the runs of each wave: its first and every continue-as-new.
func waveRuns(env *testsuite.TestWorkflowEnvironment) map[string]int {
	runs := map[string]int{}
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		runs[info.WorkflowExecution.ID]++
	})
	return runs
}

// TestLongBakeContinuesAsNew: a wave whose bake outgrows its history continues as new and
// goes on where it stood: every health round runs once, at its time, and the rollout sees the
// wave's verdict as if it had baked in one run.
func TestLongBakeContinuesAsNew(t *testing.T) {
	continueEvery(t, 10)
	env := newEnv(t)
	runs := waveRuns(env)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	st, err := run(t, env)
	if err != nil {
		t.Fatalf("rollout failed: %v", err)
	}
	if st.State != rollout.StateSucceeded {
		t.Fatalf("state %s: %s", st.State, st.Reason)
	}
	// The fleet wave bakes 1h at 1m: 61 rounds, far past 60 events.
	if n := runs[WaveID(st.Rollout, "fleet")]; n < 3 {
		t.Errorf("wave fleet ran %d times, want it to continue as new at least twice", n)
	}
	// Rounds: 11 for canary (10m), 31 for eu, 61 for fleet; none lost or repeated across runs.
	// The canary and eu stay watched until the rollout ends (health.watch: rollout): the
	// canary 11 + 90 rounds, eu 31 + 60.
	byWave := map[string]int{}
	var last time.Time
	for _, c := range f.callsOf("observe") {
		byWave[strings.Join(c.Sites, ",")]++
		if c.At.Before(last) {
			t.Errorf("health round at %s after one at %s", c.At, last)
		}
		last = c.At
	}
	want := map[string]int{"ams-1": 101, "ams-2,fra-1,fra-2": 91, "nyc-1,nyc-2": 61}
	for sites, n := range want {
		got := byWave[sites]
		// A watch's last round falls due at the instant the rollout stops the watches; the test
		// environment runs the two in either order (the round counts or not), so a watched
		// wave's count may be one short. The waves' own rounds are exact.
		if watched := sites != "nyc-1,nyc-2"; got != n && !(watched && got == n-1) {
			t.Errorf("health rounds of %s: %d, want %d (all: %v)", sites, got, n, byWave)
		}
	}
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			if s.Verdict != rollout.VerdictHealthy || s.Promotion == "" {
				t.Errorf("wave %s site %s: %s promotion %q", w.Name, s.Name, s.Verdict, s.Promotion)
			}
		}
	}
}

// TestDegradedAfterContinueAsNewIsReverted: a site that degrades late in a long bake, after
// its wave continued as new, fails the wave and is reverted by the scope.
func TestDegradedAfterContinueAsNewIsReverted(t *testing.T) {
	continueEvery(t, 10)
	env := newEnv(t)
	runs := waveRuns(env)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	// The canary bakes 10m and eu 30m: fleet bakes from 40m to 1h40m, and has continued as
	// new four times by 1h20m.
	f.degradedFrom = map[string]time.Time{"nyc-2": env.Now().Add(80 * time.Minute)}
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout succeeded with a degraded site")
	}
	if !strings.Contains(err.Error(), "site nyc-2 degraded in wave fleet") {
		t.Errorf("error %q does not name nyc-2", err)
	}
	if n := runs[WaveID(st.Rollout, "fleet")]; n < 4 {
		t.Errorf("wave fleet ran %d times, want it to have continued as new before nyc-2 degraded", n)
	}
	reverts := sitesOf(f.callsOf("revert"))
	if len(reverts) != 1 || strings.Join(reverts[0], ",") != "nyc-1,nyc-2" {
		t.Errorf("reverts %v, want the fleet wave's nyc-1, nyc-2 (scope wave)", reverts)
	}
	fleet := st.Waves[2]
	if fleet.State != rollout.StateFailed || fleet.Sites[1].Verdict != rollout.VerdictReverted {
		t.Errorf("fleet wave %s, nyc-2 %s", fleet.State, fleet.Sites[1].Verdict)
	}
}

// TestContinueAsNewInputOfALargeWave: what the 9,000-site wave of a 10,000-site fleet carries
// to its next run (its input with the status as Carry keeps it) stays under the size at which
// Temporal starts warning. Each site's promotion commit (40 hex digits that do not compress)
// makes most of it.
func TestContinueAsNewInputOfALargeWave(t *testing.T) {
	const n = 9000
	in := WaveInput{Rollout: "rollout/fleet/1a2b3c4", Commit: testCommit,
		Wave:   rollout.Wave{Name: "rest", MaxParallel: 500, Bake: time.Hour},
		Health: rollout.Health{Interval: 30 * time.Second, FailureThreshold: 3, ConvergenceTimeout: 10 * time.Minute, UnknownTimeout: 5 * time.Minute},
		Status: rollout.WaveStatus{Name: "rest", Index: 2, State: rollout.StateBaking}}
	for i := range n {
		name := fmt.Sprintf("s%05d", i)
		in.Wave.Sites = append(in.Wave.Sites, name)
		in.Sites = append(in.Sites, rollout.Site{Name: name, Labels: map[string]string{"region": fmt.Sprintf("r%d", i%10)}})
		promotion := fmt.Sprintf("%x", sha1.Sum([]byte(name)))
		in.Status.Sites = append(in.Status.Sites, rollout.SiteStatus{Name: name, Branch: "sites/" + name, Verdict: rollout.VerdictHealthy,
			Promoted: true, Promotion: promotion, Previous: fmt.Sprintf("%x", sha1.Sum([]byte("old"+name))),
			Revision: rollout.FormatRevision("sites/"+name, promotion), Message: "applied " + rollout.Short(promotion),
			Checks: []rollout.CheckResult{{Name: "error-rate", OK: true, Value: 0.001, Threshold: "<= 0.01"}}})
	}
	in.Status = in.Status.Carry()
	in.Resume = &WaveResume{Run: runbook.WaveResume{Phase: runbook.WaveBake, Batch: 18}, Wake: time.Now()}
	p, err := DataConverter().ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	size := p.Size()
	t.Logf("continue-as-new input of a %d-site wave: %d bytes stored", n, size)
	// Temporal warns from 512 KB a payload and refuses 2 MB.
	if size > 512<<10 {
		t.Errorf("continue-as-new input of a %d-site wave is %d bytes, over 512 KiB", n, size)
	}
	var back WaveInput
	if err := DataConverter().FromPayload(p, &back); err != nil {
		t.Fatal(err)
	}
	if s := back.Status.Sites[n-1]; s.Promotion == "" || !s.Promoted || s.Verdict != rollout.VerdictHealthy {
		t.Errorf("carried site: %+v; the runbook needs its promotion and verdict", s)
	}
}

// TestPauseSurvivesContinueAsNew: a pause given during a long bake holds the wave after its
// bake even though the wave continued as new in between, and a resume releases it.
func TestPauseSurvivesContinueAsNew(t *testing.T) {
	continueEvery(t, 10)
	env := newEnv(t)
	runs := waveRuns(env)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	var pause, resume answer
	// fleet bakes from 40m to 1h40m; paused at 45m, resumed at 3h.
	controlAt(env, 45*time.Minute, UpdatePause, &pause)
	controlAt(env, 3*time.Hour, UpdateResume, &resume)
	st, err := run(t, env)
	if err != nil {
		t.Fatalf("rollout failed: %v", err)
	}
	if !pause.accepted || !resume.accepted {
		t.Fatalf("pause %+v, resume %+v", pause, resume)
	}
	if n := runs[WaveID(st.Rollout, "fleet")]; n < 3 {
		t.Errorf("wave fleet ran %d times, want it to continue as new while paused", n)
	}
	// The bake's rounds all ran (a pause does not stop health checks), the held wave went on
	// observing its sites every interval until the resume (1h40m to 3h: 80 more rounds), and
	// the wave ended only after the resume.
	n := 0
	for _, c := range f.callsOf("observe") {
		if strings.Join(c.Sites, ",") == "nyc-1,nyc-2" {
			n++
		}
	}
	if n != 141 {
		t.Errorf("fleet health rounds: %d, want 141 (61 in the bake, 80 while held)", n)
	}
	if fin := st.Waves[2].FinishedAt; fin.Sub(st.StartedAt) < 3*time.Hour {
		t.Errorf("fleet wave finished %s after the start, before the resume at 3h", fin.Sub(st.StartedAt))
	}
}
