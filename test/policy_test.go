//go:build e2e

package test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestPolicyOnDev commits policies to the sample repo of `fleetwave dev`: a freeze holds the
// eu-west wave until it ends, a Rego policy denies the fleet wave, and a policy that does not
// compile fails the next rollout before anything is written.
func TestPolicyOnDev(t *testing.T) {
	s := newDevSession(t, "--no-sample-rollout")
	bin, gitURL, temporal, tc, fw, bare := s.bin, s.gitURL, s.temporal, s.tc, s.fw, s.bare
	sample, err := os.ReadFile("../cmd/fleetwave/sample/fleetwave.yaml")
	if err != nil {
		t.Fatal(err)
	}

	// A freeze of eu-west from now for 25s: the canary runs (10s bake), eu-west waits.
	start := time.Now().UTC().Truncate(time.Second)
	end := start.Add(25 * time.Second)
	plan := string(sample) + fmt.Sprintf(`  policies:
    freezes:
      - {name: e2e-freeze, start: %q, timezone: UTC, duration: 25s, waves: [eu-west]}
`, start.Format("2006-01-02T15:04:05"))
	c, _ := clonePush(t, gitURL, "freeze eu-west, close the fleet", map[string]string{
		"fleetwave.yaml": plan,
		".fleetwave/policies/e2e.rego": `package fleetwave.policy

deny contains "the fleet wave is closed in this test" if input.wave.name == "fleet"
`,
	})
	id := workflows.RolloutID("demo", c)
	var waiting rollout.Status
	waitFor(t, "eu-west waiting for the freeze", func() bool {
		st, err := fw.Status(context.Background(), id)
		waiting = st
		return err == nil && st.State == rollout.StateWaiting
	})
	wantMsg := "freeze e2e-freeze until " + end.Format(time.RFC3339)
	if waiting.Wave != "eu-west" || !strings.Contains(waiting.Waves[1].Message, wantMsg) {
		t.Errorf("while frozen: wave %s, message %q; want %q", waiting.Wave, waiting.Waves[1].Message, wantMsg)
	}
	if out, _ := fleetwaveCLI(t, bin, temporal, "status", id); !strings.Contains(out, "Waiting") || !strings.Contains(out, wantMsg) {
		t.Errorf("fleetwave status does not show the wait:\n%s", out)
	}
	if err := waitRollout(t, tc, id, 3*time.Minute); err == nil {
		t.Fatal("rollout succeeded past the deny")
	}
	st, err := fw.Status(context.Background(), id)
	if err != nil || st.State != rollout.StateFailed || st.Reason != "policy denied wave fleet: the fleet wave is closed in this test" {
		t.Fatalf("final: %v %s %q", err, st.State, st.Reason)
	}
	saveHistory(t, tc, id, "rollout-policy")
	// eu-west was promoted only after the freeze ended (committer time of its promotions).
	for _, s := range []string{"ams-2", "fra-1"} {
		ct, _ := strconv.ParseInt(git(t, bare, "log", "-1", "--format=%ct", "refs/heads/sites/"+s), 10, 64)
		if at := time.Unix(ct, 0); at.Before(end) {
			t.Errorf("site %s promoted at %s, inside the freeze (ends %s)", s, at.UTC(), end)
		}
		if git(t, bare, "rev-parse", "refs/heads/sites/"+s+"^{tree}") != git(t, bare, "rev-parse", c+"^{tree}") {
			t.Errorf("site %s does not run %s", s, rollout.Short(c))
		}
	}
	fleetHeads := map[string]string{}
	for _, s := range []string{"nyc-1", "nyc-2", "sfo-1"} {
		fleetHeads[s] = lsRemote(t, gitURL, "refs/heads/sites/"+s)
		if git(t, bare, "rev-parse", "refs/heads/sites/"+s+"^{tree}") == git(t, bare, "rev-parse", c+"^{tree}") {
			t.Errorf("denied wave's site %s was promoted", s)
		}
	}

	// A policy that does not compile: the rollout fails naming the file and line, and no
	// branch moves.
	canary := lsRemote(t, gitURL, "refs/heads/sites/ams-1")
	broken, _ := clonePush(t, gitURL, "broken policy", map[string]string{
		".fleetwave/policies/e2e.rego": "package fleetwave.policy\n\ndeny contains msg if {\n\tmsg := undefined_function(1)\n}\n",
	})
	brokenID := workflows.RolloutID("demo", broken)
	if err := waitRollout(t, tc, brokenID, time.Minute); err == nil {
		t.Fatal("rollout with a broken policy succeeded")
	}
	st, _ = fw.Status(context.Background(), brokenID)
	if !strings.HasPrefix(st.Reason, "load plan: .fleetwave/policies/e2e.rego:4:") {
		t.Errorf("reason %q, want the policy file and line", st.Reason)
	}
	if lsRemote(t, gitURL, "refs/heads/sites/ams-1") != canary {
		t.Error("the canary moved although the policies do not compile")
	}
}
