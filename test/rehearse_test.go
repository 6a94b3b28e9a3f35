//go:build e2e

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/internal/schematest"
	"github.com/fleetwave/fleetwave/rollout"
)

// rehearsalReport is the part of `fleetwave rehearse --report x.json` the tests read.
type rehearsalReport struct {
	Kind      string         `json:"kind"`
	Status    rollout.Status `json:"status"`
	Rehearsal struct {
		Faults []struct {
			Kind      string `json:"kind"`
			Rejected  int    `json:"rejected"`
			Restarted string `json:"restarted"`
			Sites     []struct {
				Site string `json:"site"`
			} `json:"sites"`
		} `json:"faults"`
		Waves []struct {
			Name  string        `json:"name"`
			State rollout.State `json:"state"`
			Start string        `json:"start"`
			End   string        `json:"end"`
		} `json:"waves"`
		Deferred int `json:"deferred"`
		CatchUps []struct {
			Site    string          `json:"site"`
			Commit  string          `json:"commit"`
			Verdict rollout.Verdict `json:"verdict"`
			State   rollout.State   `json:"state"`
			At      string          `json:"at"`
			Reason  string          `json:"reason"`
		} `json:"catchUps"`
		Duration     string `json:"duration"`
		RealDuration string `json:"realDuration"`
		Histories    []struct {
			Workflow string `json:"workflow"`
			Events   int    `json:"events"`
		} `json:"histories"`
		Git struct {
			Promotions int      `json:"promotions"`
			Reverts    int      `json:"reverts"`
			Duplicates []string `json:"duplicates"`
			Mismatches []string `json:"mismatches"`
		} `json:"git"`
	} `json:"rehearsal"`
}

// rehearse runs `fleetwave rehearse` with args and a faults file, and returns its exit code,
// output and JSON report.
func rehearse(t *testing.T, bin, faults string, args ...string) (int, string, rehearsalReport) {
	t.Helper()
	dir := t.TempDir()
	report := filepath.Join(dir, "report.json")
	if faults != "" {
		path := filepath.Join(dir, "faults.yaml")
		if err := os.WriteFile(path, []byte("apiVersion: fleetwave.dev/v1alpha1\nkind: RehearsalFaults\nfaults:\n"+faults), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--faults", path)
	}
	// A rehearsal that ran on the wrong clock could wait for hours: stop it long before.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"rehearse", "--report", report, "--report", filepath.Join(dir, "report.md")}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the rehearsal did not end within 5 minutes:\n%s", out.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rep rehearsalReport
	if code == 0 {
		data, err := os.ReadFile(report)
		if err != nil {
			t.Fatalf("no report: %v\n%s", err, out.String())
		}
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatalf("report: %v", err)
		}
		schematest.Check(t, "RehearsalReport", data)
		if md, err := os.ReadFile(filepath.Join(dir, "report.md")); err != nil || !bytes.Contains(md, []byte("**Outcome: rollout ")) {
			t.Errorf("markdown report: %v\n%s", err, md)
		}
	}
	return code, out.String(), rep
}

// TestRehearseDegradedSite: 30 generated sites in 3 regions; the faults degrade one site of
// the region wave, slow every site's reconcile, have someone else write before two pushes,
// and kill the worker (kill -9) while the region wave bakes. The report's reverted sites are
// exactly the region wave's (scope wave), the last wave is untouched, both rejected pushes
// were retried, the git CLI finds one promotion and at most one revert per site, as the status
// says, and the rehearsal exits 0.
func TestRehearseDegradedSite(t *testing.T) {
	bin := buildFleetwave(t)
	code, out, rep := rehearse(t, bin, `  - {degrade: {sites: [r1-s0004]}}
  - {slowReconcile: {sites: ["*"], delay: {p50: 30s, p99: 2m}}}
  - {rejectPushes: {count: 2}}
  - {restartWorker: {at: 12m}}
`, "--sites", "30", "--regions", "3", "--time-scale", "120")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "rehearsal done: rollout Failed") || !strings.Contains(last, "site r1-s0004 degraded in wave r1") {
		t.Errorf("last line: %s", last)
	}
	st := rep.Status
	if rep.Kind != "RehearsalReport" || st.State != rollout.StateFailed || len(st.Waves) != 3 {
		t.Fatalf("report: kind %s, rollout %s, %d waves", rep.Kind, st.State, len(st.Waves))
	}
	var reverted, r1 []string
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			if s.Verdict == rollout.VerdictReverted {
				reverted = append(reverted, s.Name)
			}
			if w.Name == "r1" {
				r1 = append(r1, s.Name)
			}
			if w.Name == "rest" && (s.Promoted || s.Verdict != rollout.VerdictPending) {
				t.Errorf("rest wave site %s: promoted %v, verdict %s; want it untouched", s.Name, s.Promoted, s.Verdict)
			}
		}
	}
	if strings.Join(reverted, " ") != strings.Join(r1, " ") || len(r1) != 9 {
		t.Errorf("reverted %v, want the region wave's sites %v", reverted, r1)
	}
	if c := st.Waves[0].Sites[0]; c.Verdict != rollout.VerdictHealthy || !c.Promoted {
		t.Errorf("canary %+v, want promoted and healthy", c)
	}
	for _, f := range rep.Rehearsal.Faults {
		switch f.Kind {
		case "rejectPushes":
			if f.Rejected != 2 {
				t.Errorf("%d pushes rejected, want 2", f.Rejected)
			}
		case "degrade":
			if len(f.Sites) != 1 || f.Sites[0].Site != "r1-s0004" {
				t.Errorf("degrade acted on %+v", f.Sites)
			}
		case "restartWorker":
			if f.Restarted == "" {
				t.Error("the worker was not restarted")
			}
		}
	}
	if g := rep.Rehearsal.Git; g.Promotions != 10 || g.Reverts != 9 || len(g.Duplicates) > 0 || len(g.Mismatches) > 0 {
		t.Errorf("git: %+v; want 10 promotions, 9 reverts, no duplicate, no mismatch", g)
	}
	if !strings.Contains(out, "worker killed (kill -9) and started again") {
		t.Errorf("no restart in the progress lines:\n%s", out)
	}
	if len(rep.Rehearsal.Histories) != 4 || rep.Rehearsal.Histories[0].Events == 0 || !strings.HasSuffix(rep.Rehearsal.Histories[3].Workflow, "/watch/canary") {
		t.Errorf("histories %+v: want the rollout's, its two waves' and the canary's watch", rep.Rehearsal.Histories)
	}
}

// TestRehearseUnreachableSite: a site of the last wave cannot be reached for the whole
// rollout. It is never Healthy, and after unknownTimeout its wave fails closed.
func TestRehearseUnreachableSite(t *testing.T) {
	bin := buildFleetwave(t)
	code, out, rep := rehearse(t, bin, "  - {unreachable: {sites: [r2-s0004]}}\n", "--sites", "6", "--regions", "2", "--time-scale", "150")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if strings.Contains(out, "wave rest Baking: 3 Healthy") || strings.Contains(out, "wave rest Succeeded") {
		t.Errorf("the unreachable site counted as healthy:\n%s", out)
	}
	st := rep.Status
	rest := st.Waves[len(st.Waves)-1]
	if st.State != rollout.StateFailed || rest.State != rollout.StateFailed || !strings.Contains(st.Reason, "r2-s0004") {
		t.Fatalf("rollout %s (%s), rest %s; want both failed for r2-s0004", st.State, st.Reason, rest.State)
	}
	for _, s := range rest.Sites {
		if s.Name == "r2-s0004" && s.Verdict == rollout.VerdictHealthy {
			t.Errorf("r2-s0004 is Healthy")
		}
	}
}

// TestRehearseBadFaults: a faults file with a mistake fails with its position, and nothing
// starts.
func TestRehearseBadFaults(t *testing.T) {
	bin := buildFleetwave(t)
	code, out, _ := rehearse(t, bin, "  - {degrade: {sites: [r9-*]}}\n", "--sites", "6", "--regions", "2")
	if code != 1 || !strings.Contains(out, `faults.yaml:4:24: "r9-*" names no site of the plan`) || strings.Contains(out, "rehearsing") {
		t.Errorf("exit %d:\n%s\nwant exit 1 with the position, and nothing started", code, out)
	}
}

// TestRehearseFreezeOnThePlansClock: a plan whose freeze ends an hour after the rollout starts
// (its calendar, absolute times), rehearsed at time scale 300. The canary waits for the end
// of the freeze on the plan's clock, an hour there and 12 s of real time; on the real clock it
// would wait the whole hour.
func TestRehearseFreezeOnThePlansClock(t *testing.T) {
	bin := buildFleetwave(t)
	now := time.Now().UTC()
	plan := filepath.Join(t.TempDir(), "fleetwave.yaml")
	if err := os.WriteFile(plan, []byte(`apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: frozen}
spec:
  sites: [{name: ams-1}, {name: fra-1}]
  waves:
    - {name: canary, sites: [ams-1], bake: 5m}
    - {name: rest, bake: 5m}
  policies:
    freezes:
      - {name: change-freeze, start: "`+now.Add(-time.Hour).Format("2006-01-02T15:04:05")+`", duration: 2h}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, rep := rehearse(t, bin, "", "--plan", plan, "--time-scale", "300")
	if code != 0 || rep.Status.State != rollout.StateSucceeded {
		t.Fatalf("exit %d, rollout %s:\n%s", code, rep.Status.State, out)
	}
	if took := time.Since(start); took < 12*time.Second {
		t.Errorf("the rehearsal took %s: the canary did not wait for the freeze's end (12 s of real time)", took)
	}
	if w := rep.Rehearsal.Waves[0]; w.Name != "canary" {
		t.Fatalf("first wave %+v", w)
	} else if d, err := time.ParseDuration(w.Start); err != nil || d < 55*time.Minute || d > 2*time.Hour {
		t.Errorf("the canary started %q into the plan, want about 1h (the freeze's end)", w.Start)
	}
}
