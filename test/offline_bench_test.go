//go:build e2e

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// BenchmarkOfflineFleet measures the edge-fleet scale target of docs/benchmarks.md: a
// rehearsal of 10,000 simulated sites in three waves (1 canary; 999 sites in 10 batches of
// 100; 9,000 in 90 batches of 100), no bake (one clean round), health.offline {after: 2m,
// action: defer, maxDeferred: 2%}, at time scale 60. It runs once with every site online and
// once with 1 % of them (s???99: one in each batch of 100 but the canary's) offline for the
// whole rollout. It reports each wave's time and the rollout's on the plan's clock, the real
// time, and the deferred sites. Without deferral each offline site would hold its batch for
// convergenceTimeout (10m): 100 batches × 10m, about 17 hours on the plan's clock.
func BenchmarkOfflineFleet(b *testing.B) {
	bin := buildFleetwave(b)
	for _, offline := range []bool{false, true} {
		b.Run("offline="+strconv.FormatBool(offline), func(b *testing.B) {
			for range b.N {
				rep := rehearseOfflineFleet(b, bin, 10000, offline)
				st := rep.Status
				if st.State != rollout.StateSucceeded {
					b.Fatalf("rollout %s: %s", st.State, st.Reason)
				}
				want := 0
				if offline {
					want = 100
				}
				if rep.Rehearsal.Deferred != want {
					b.Fatalf("%d sites deferred, want %d", rep.Rehearsal.Deferred, want)
				}
				for _, w := range rep.Rehearsal.Waves {
					start, err1 := time.ParseDuration(w.Start)
					end, err2 := time.ParseDuration(w.End)
					if err1 != nil || err2 != nil {
						b.Fatalf("wave %s: start %q, end %q", w.Name, w.Start, w.End)
					}
					b.ReportMetric((end - start).Minutes(), w.Name+"-plan-min")
				}
				total, _ := time.ParseDuration(rep.Rehearsal.Duration)
				took, _ := time.ParseDuration(rep.Rehearsal.RealDuration)
				b.ReportMetric(total.Minutes(), "rollout-plan-min")
				b.ReportMetric(took.Seconds(), "real-s")
				b.ReportMetric(float64(rep.Rehearsal.Deferred), "deferred")
			}
		})
	}
}

// rehearseOfflineFleet rehearses the plan of BenchmarkOfflineFleet for n sites, with 1 % of
// them offline when offline is set, and returns its report.
func rehearseOfflineFleet(b *testing.B, bin string, n int, offline bool) rehearsalReport {
	b.Helper()
	dir := b.TempDir()
	var plan strings.Builder
	plan.WriteString(`apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: edge}
spec:
  waves:
    - {name: canary, selector: {wave: canary}}
    - {name: early, selector: {wave: early}, maxParallel: 100}
    - {name: rest, maxParallel: 100}
  health:
    interval: 30s
    convergenceTimeout: 10m
    unknownTimeout: 5m
    offline: {after: 2m, action: defer, maxDeferred: 2%}
  sites:
`)
	for i := range n {
		wave := "rest"
		switch {
		case i == 0:
			wave = "canary"
		case i < n/10:
			wave = "early"
		}
		fmt.Fprintf(&plan, "    - {name: s%05d, labels: {wave: %s}}\n", i, wave)
	}
	planFile := filepath.Join(dir, "fleetwave.yaml")
	report := filepath.Join(dir, "report.json")
	if err := os.WriteFile(planFile, []byte(plan.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	args := []string{"rehearse", "--plan", planFile, "--time-scale", "60", "--catch-up-timeout", "0", "--report", report}
	if offline {
		faults := filepath.Join(dir, "faults.yaml")
		if err := os.WriteFile(faults, []byte("apiVersion: fleetwave.dev/v1alpha1\nkind: RehearsalFaults\nfaults:\n  - {unreachable: {sites: [\"s???99\"]}}\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		args = append(args, "--faults", faults)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("rehearse: %v\n%s", err, out.String())
	}
	data, err := os.ReadFile(report)
	if err != nil {
		b.Fatal(err)
	}
	var rep rehearsalReport
	if err := json.Unmarshal(data, &rep); err != nil {
		b.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	b.Logf("%s", lines[len(lines)-1])
	return rep
}
