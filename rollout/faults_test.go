package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func faultsPlan(t *testing.T) *Plan {
	t.Helper()
	p, err := ParsePlan("fleetwave.yaml", []byte(header+`  sites: [{name: s0003}, {name: s0007}, {name: s0011}, {name: r2-s0001}, {name: r2-s0002}]
  waves: [{name: all}]
`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseFaults(t *testing.T) {
	doc := `apiVersion: fleetwave.dev/v1alpha1
kind: RehearsalFaults
faults:
  - {degrade: {sites: [s0007]}}
  - {degrade: {sites: ["r2-*"], after: 20m}}
  - {unreachable: {sites: [s0003], from: 5m, for: 10m}}
  - {slowReconcile: {sites: ["*"], delay: {p50: 30s, p99: 4m}}}
  - {flap: {sites: [s0011], period: 2m}}
  - {rejectPushes: {count: 3}}
  - {restartWorker: {at: 15m}}
`
	f, err := ParseFaults("faults.yaml", []byte(doc), faultsPlan(t))
	if err != nil {
		t.Fatal(err)
	}
	want := &Faults{Faults: []Fault{
		{Degrade: &DegradeFault{Sites: []string{"s0007"}}},
		{Degrade: &DegradeFault{Sites: []string{"r2-*"}, After: 20 * time.Minute}},
		{Unreachable: &UnreachableFault{Sites: []string{"s0003"}, From: 5 * time.Minute, For: 10 * time.Minute}},
		{SlowReconcile: &SlowReconcileFault{Sites: []string{"*"}, P50: 30 * time.Second, P99: 4 * time.Minute}},
		{Flap: &FlapFault{Sites: []string{"s0011"}, Period: 2 * time.Minute}},
		{RejectPushes: &RejectPushesFault{Count: 3}},
		{RestartWorker: &RestartWorkerFault{At: 15 * time.Minute}},
	}}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("faults (-want +got):\n%s", diff)
	}
	if !Matches(f.Faults[1].Degrade.Sites, "r2-s0002") || Matches(f.Faults[1].Degrade.Sites, "s0007") {
		t.Error("r2-* matches wrongly")
	}
}

func TestParseFaultsErrors(t *testing.T) {
	head := "apiVersion: fleetwave.dev/v1alpha1\nkind: RehearsalFaults\nfaults:\n"
	tests := []struct {
		name, faults string
		want         []string
	}{
		{"unknown field", "  - {degrade: {sites: [s0007], aftre: 2m}}\n", []string{`faults.yaml:4:`, `unknown field "aftre"`}},
		{"no site", "  - {degrade: {sites: [s9999]}}\n", []string{`faults.yaml:4:24: "s9999" names no site of the plan`}},
		{"bad glob", "  - {flap: {sites: [\"s[00\"], period: 2m}}\n", []string{`faults.yaml:4:21: "s[00" is not a valid glob`}},
		{"two kinds", "  - {degrade: {sites: [s0007]}, flap: {sites: [s0011], period: 1m}}\n", []string{`faults.yaml:4:5: fault 1 needs exactly one of`, `it has 2`}},
		{"bad duration", "  - {unreachable: {sites: [s0003], from: soon}}\n", []string{`faults.yaml:4:42: invalid duration "soon"`}},
		{"p99 below p50", "  - {slowReconcile: {sites: [\"*\"], delay: {p50: 1m, p99: 10s}}}\n", []string{`p99 10s is below p50 1m0s`}},
		{"no delay", "  - {slowReconcile: {sites: [\"*\"]}}\n", []string{`slowReconcile needs delay`}},
		{"no count", "  - {rejectPushes: {}}\n", []string{`rejectPushes needs a count of at least 1`}},
		{"restart when", "  - {restartWorker: {}}\n", []string{`restartWorker needs at`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFaults("faults.yaml", []byte(head+tt.faults), faultsPlan(t))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := ParseFaults("faults.yaml", []byte("apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nfaults: []\n"), faultsPlan(t)); err == nil || !strings.Contains(err.Error(), `faults.yaml:2:7: kind must be "RehearsalFaults"`) {
		t.Errorf("wrong kind: %v", err)
	}
}

func TestPlanScaled(t *testing.T) {
	p, err := ParsePlan("fleetwave.yaml", []byte(header+`  sites: [{name: a}, {name: b}]
  waves:
    - {name: one, sites: [a], bake: 1h, minSoak: 30m, approval: {approvers: [U01], timeout: 2h}}
    - {name: two, bake: 10m}
  health: {interval: 30s, convergenceTimeout: 10m, unknownTimeout: 5m}
  policies: {minSoak: 1h}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Scaled(3600)
	one := s.Waves[0]
	// Soaks stay on the plan's clock: a rehearsal judges policies there (PlanClock).
	if one.Bake != time.Second || *one.MinSoak != 30*time.Minute || one.Approval.Timeout != 2*time.Second || s.Waves[1].Bake != 10*time.Minute/3600 {
		t.Errorf("waves scaled to %+v %+v", one, s.Waves[1])
	}
	if s.Health.Interval != MinScaledInterval || s.Health.ConvergenceTimeout != 10*time.Minute/3600 || s.Health.UnknownTimeout != 5*time.Minute/3600 || s.Policies.MinSoak != time.Hour {
		t.Errorf("health %+v, policies %+v", s.Health, s.Policies)
	}
	if p.Waves[0].Bake != time.Hour || *p.Waves[0].MinSoak != 30*time.Minute || p.Waves[0].Approval.Timeout != 2*time.Hour || p.Health.Interval != 30*time.Second {
		t.Error("Scaled changed the plan it was given")
	}
	if p.MaxScale() != 300 { // unknownTimeout 5m down to 1s
		t.Errorf("MaxScale = %g, want 300", p.MaxScale())
	}
	if p.Scaled(1) != p {
		t.Error("a scale of 1 copies the plan")
	}
}

// FuzzParseFaults: whatever the file, ParseFaults answers faults or a PlanError, never panics.
func FuzzParseFaults(f *testing.F) {
	f.Add([]byte("apiVersion: fleetwave.dev/v1alpha1\nkind: RehearsalFaults\nfaults:\n  - {degrade: {sites: [s0007]}}\n  - {slowReconcile: {sites: [\"*\"], delay: {p50: 30s, p99: 4m}}}\n"))
	f.Add([]byte("faults: [{flap: {sites: [\"[\"], period: -1s}}, {restartWorker: {at: 1h}}, {rejectPushes: {count: -3}}]\n"))
	f.Add([]byte(strings.Repeat("{", 300)))
	plan := &Plan{Sites: []Site{{Name: "s0007"}, {Name: "r2-s0001"}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		faults, err := ParseFaults("faults.yaml", data, plan)
		var pe *PlanError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("error %v is not a PlanError", err)
		}
		if err == nil && faults == nil {
			t.Error("no faults and no error")
		}
	})
}

// TestPlanClock: at time scale 60, a minute of a rehearsal is an hour of the plan; a policy input
// moves onto the plan's clock (every time in it), and a decision comes back to the real one.
func TestPlanClock(t *testing.T) {
	start := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	c := PlanClock{Start: start, Scale: 60}
	if got := c.Plan(start.Add(time.Minute)); !got.Equal(start.Add(time.Hour)) {
		t.Errorf("Plan(start+1m) = %s", got)
	}
	if got := c.Real(start.Add(2 * time.Hour)); !got.Equal(start.Add(2 * time.Minute)) {
		t.Errorf("Real(start+2h) = %s", got)
	}
	if !c.Plan(time.Time{}).IsZero() || !c.Real(time.Time{}).IsZero() {
		t.Error("a zero time must stay zero")
	}
	in := PolicyInput{Now: start.Add(3 * time.Minute), Rollout: PolicyRollout{StartedAt: start},
		PreviousWaves: []PolicyWaveResult{{StartedAt: start.Add(time.Minute), FinishedAt: start.Add(2 * time.Minute)}},
		Approvals:     []PolicyApproval{{At: start.Add(90 * time.Second)}}}
	got := c.PlanInput(in)
	if !got.Now.Equal(start.Add(3*time.Hour)) || !got.Rollout.StartedAt.Equal(start) || !got.PreviousWaves[0].StartedAt.Equal(start.Add(time.Hour)) ||
		!got.PreviousWaves[0].FinishedAt.Equal(start.Add(2*time.Hour)) || !got.Approvals[0].At.Equal(start.Add(90*time.Minute)) {
		t.Errorf("PlanInput = %+v", got)
	}
	if !in.PreviousWaves[0].StartedAt.Equal(start.Add(time.Minute)) || !in.Approvals[0].At.Equal(start.Add(90*time.Second)) {
		t.Error("PlanInput changed the input it was given")
	}
	d := c.RealDecision(PolicyDecision{Outcome: PolicyWait, At: start.Add(3 * time.Hour), WaitUntil: start.Add(5 * time.Hour)})
	if !d.At.Equal(start.Add(3*time.Minute)) || !d.WaitUntil.Equal(start.Add(5*time.Minute)) {
		t.Errorf("RealDecision = %+v", d)
	}
}
