package workflows

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetwave/fleetwave/rollout"
)

// The test clock starts on Thursday 2026-11-26 at 09:00 UTC; the canary is promoted then,
// converges at once and bakes 10m, so the eu wave would start at 09:10.

func TestPolicyFreezeHoldsTheWaveUntilItEnds(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", `  policies:
    freezes:
      - {name: lunch, start: "2026-11-26T09:05:00", duration: 2h, waves: [eu]}
`))
	var during rollout.Status
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		_ = v.Get(&during)
	}, time.Hour)
	st, err := run(t, env)
	if err != nil {
		t.Fatal(err)
	}
	// While frozen: the rollout waits and says why and until when.
	if during.State != rollout.StateWaiting || during.Waves[1].State != rollout.StateWaiting ||
		!strings.Contains(during.Waves[1].Message, "waiting until 2026-11-26T11:05:00Z: freeze lunch until 2026-11-26T11:05:00Z") {
		t.Errorf("status during the freeze: %s, eu %s %q", during.State, during.Waves[1].State, during.Waves[1].Message)
	}
	// The eu wave starts when the freeze ends, on the durable timer, not before.
	promotes := f.callsOf("promote")
	if eu := promotes[1]; !slices.Equal(eu.Sites, []string{"ams-2", "fra-1"}) || !eu.At.Equal(time.Date(2026, 11, 26, 11, 5, 0, 0, time.UTC)) {
		t.Errorf("eu promoted %v at %s, want at 11:05", eu.Sites, eu.At)
	}
	if st.State != rollout.StateSucceeded || st.Waves[1].Policy == nil || st.Waves[1].Policy.Outcome != rollout.PolicyAllow {
		t.Errorf("final: %s, eu policy %+v", st.State, st.Waves[1].Policy)
	}
}

func TestPolicyDenyStopsTheRolloutWithTheMessages(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", ""))
	f.policies = []rollout.PolicyFile{{Path: ".fleetwave/policies/days.rego", Source: `package fleetwave.policy

deny contains "no fleet-wide changes on Thursdays" if {
	input.wave.name == "fleet"
	time.weekday(time.parse_rfc3339_ns(input.now)) == "Thursday"
}

deny contains msg if {
	input.wave.name == "fleet"
	not startswith(input.rollout.author, "Ada")
	msg := "only Ada"
}

deny contains msg if {
	input.wave.name == "fleet"
	some prev in input.previousWaves
	prev.verdicts[site] != "Healthy"
	msg := sprintf("site %s of wave %s is not healthy", [site, prev.name])
}
`}}
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout succeeded past a deny")
	}
	if want := "policy denied wave fleet: no fleet-wide changes on Thursdays"; st.Reason != want {
		t.Errorf("reason %q, want %q", st.Reason, want)
	}
	if diff := cmp.Diff([][]string{{"ams-1"}, {"ams-2", "fra-1"}, {"fra-2"}}, sitesOf(f.callsOf("promote"))); diff != "" {
		t.Errorf("promotions (-want +got):\n%s", diff)
	}
	if len(f.callsOf("revert")) != 0 {
		t.Errorf("a deny reverted healthy waves: %v", f.callsOf("revert"))
	}
	fleet := st.Waves[2]
	if fleet.State != rollout.StatePending || fleet.Policy == nil || fleet.Policy.Outcome != rollout.PolicyDeny ||
		fleet.Message != "denied by policy: no fleet-wide changes on Thursdays" {
		t.Errorf("fleet wave: %s %q %+v", fleet.State, fleet.Message, fleet.Policy)
	}
}

func TestRevertDuringAFreezeStillHappens(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", `  policies:
    freezes:
      - {name: everything, start: "2026-11-26T09:01:00", duration: 24h}
`))
	f.degraded["ams-1"] = true
	st, err := run(t, env)
	if err == nil {
		t.Fatal("rollout succeeded with a degraded canary")
	}
	// The canary started before the freeze; its revert, at 09:02, is inside it and happens.
	reverts := f.callsOf("revert")
	if len(reverts) != 1 || !slices.Equal(reverts[0].Sites, []string{"ams-1"}) || !reverts[0].At.Equal(time.Date(2026, 11, 26, 9, 2, 0, 0, time.UTC)) {
		t.Errorf("reverts = %+v, want ams-1 at 09:02", reverts)
	}
	if st.Waves[0].Sites[0].Verdict != rollout.VerdictReverted {
		t.Errorf("canary %+v", st.Waves[0].Sites[0])
	}
}

func TestPolicyWaitCanBeAborted(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "wave", `  policies:
    minSoak: 6h
`))
	var got answer
	controlAt(env, time.Hour, UpdateAbort, &got)
	st := runStopped(t, env)
	if !got.accepted || st.State != rollout.StateAborted || !strings.Contains(st.Reason, "aborted by U012ABC") {
		t.Errorf("abort during the soak: accepted %v, state %s, reason %q", got.accepted, st.State, st.Reason)
	}
	if n := len(f.callsOf("promote")); n != 1 {
		t.Errorf("%d promotions, want only the canary's", n)
	}
}

func TestCancelWhileWaitingRevertsNothing(t *testing.T) {
	env := newEnv(t)
	f := newFakeFleet(t, env, testPlan(t, "all", `  policies:
    minSoak: 6h
`))
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Hour)
	env.ExecuteWorkflow(Rollout, RolloutInput{Fleet: "demo", Commit: testCommit})
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("error %v, want canceled", err)
	}
	if n := len(f.callsOf("promote")); n != 1 {
		t.Errorf("%d promotions, want only the canary's", n)
	}
	if reverts := f.callsOf("revert"); len(reverts) != 0 {
		t.Errorf("a cancel during a policy wait reverted %v", reverts)
	}
}

func TestUnsatisfiablePoliciesDenyInsteadOfWaitingForever(t *testing.T) {
	env := newEnv(t)
	newFakeFleet(t, env, testPlan(t, "wave", `  policies:
    freezes:
      - {name: daytime, start: "2026-11-26T09:00:00", duration: 8h, rrule: "FREQ=DAILY", waves: [eu]}
    businessHours: {days: [Mon, Tue, Wed, Thu, Fri, Sat, Sun], start: "09:00", end: "17:00", waves: [eu]}
`))
	st, err := run(t, env)
	if err == nil || !strings.Contains(st.Reason, "policy denied wave eu: the policies made wave eu wait 100 times in a row") {
		t.Fatalf("reason %q, err %v", st.Reason, err)
	}
}
