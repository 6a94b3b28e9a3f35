package policy

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// benchPolicies are ten policies of the kinds fleets write: per-site label checks, counts,
// commit message rules, history of earlier waves, time rules and waits.
var benchPolicies = []string{
	`deny contains msg if { some s in input.wave.sites; s.labels.tier == "pci"; msg := sprintf("%s is PCI", [s.name]) }`,
	`deny contains "too many sites" if count(input.wave.sites) > 5000`,
	`deny contains "no robots" if startswith(input.rollout.author, "bot")`,
	`deny contains "marked do-not-deploy" if contains(input.rollout.message, "[do-not-deploy]")`,
	`deny contains msg if { some w in input.previousWaves; some site, v in w.verdicts; v != "Healthy"; msg := sprintf("%s not healthy", [site]) }`,
	`deny contains msg if { some s in input.wave.sites; not s.timezone; msg := sprintf("%s has no timezone", [s.name]) }`,
	`deny contains "weekend" if { input.wave.index > 1; time.weekday(time.parse_rfc3339_ns(input.now)) == "Sunday" }`,
	`wait_until := "2026-01-01T00:00:00Z" if { input.wave.name == "never" }`,
	`regions := {s.labels.region | some s in input.wave.sites}
deny contains "more than 20 regions in one wave" if count(regions) > 20`,
	`deny contains msg if { some s in input.wave.sites; s.labels.region == "cn-north"; input.wave.index == 0; msg := "no canary in cn-north" }`,
}

func benchInput(sites int) rollout.PolicyInput {
	in := rollout.PolicyInput{
		Rollout:   rollout.PolicyRollout{ID: "rollout/bench/abc1234", Commit: "abc1234", Author: "Ada <ada@example.com>", Message: "web 1.2"},
		Wave:      rollout.PolicyWave{Name: "fleet", Index: 2},
		Approvals: []rollout.PolicyApproval{},
		Now:       time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC),
	}
	for i := range sites {
		in.Wave.Sites = append(in.Wave.Sites, rollout.PolicySite{Name: fmt.Sprintf("site-%04d", i),
			Labels: map[string]string{"region": fmt.Sprintf("r%d", i%12), "tier": "prod"}, Timezone: "Europe/Amsterdam"})
	}
	for w := range 2 {
		prev := rollout.PolicyWaveResult{Name: fmt.Sprintf("w%d", w), Index: w, State: rollout.StateSucceeded, Verdicts: map[string]rollout.Verdict{}}
		for i := range 50 {
			prev.Verdicts[fmt.Sprintf("prev-%d-%d", w, i)] = rollout.VerdictHealthy
		}
		in.PreviousWaves = append(in.PreviousWaves, prev)
	}
	return in
}

// BenchmarkDecide measures one policy decision before a wave of 1,000 sites with 10 Rego
// policies plus the built-ins (a freeze, business hours over three time zones, a soak), as a
// worker makes it: the compiled policies come from the cache. It reports the median and the
// 99th percentile of the decisions it timed.
func BenchmarkDecide(b *testing.B) {
	var files []rollout.PolicyFile
	for i, src := range benchPolicies {
		files = append(files, rollout.PolicyFile{Path: fmt.Sprintf("p%02d.rego", i), Source: "package fleetwave.policy\n\n" + src + "\n"})
	}
	in := benchInput(1000)
	for i := range in.Wave.Sites {
		in.Wave.Sites[i].Timezone = []string{"Europe/Amsterdam", "Europe/London", "Europe/Berlin"}[i%3]
	}
	req := Request{
		Builtins: rollout.Policies{
			Freezes:       []rollout.Freeze{{Name: "bf", Start: time.Date(2025, 11, 28, 0, 0, 0, 0, time.UTC), Timezone: "UTC", Duration: 96 * time.Hour, RRule: "FREQ=YEARLY;BYMONTH=11;BYDAY=+4FR"}},
			BusinessHours: &rollout.BusinessHours{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}, Start: 8 * 60, End: 18 * 60},
		},
		MinSoak: time.Hour,
		Files:   files,
		Input:   in,
	}
	ctx := context.Background()
	if d := Decide(ctx, req); d.Outcome == rollout.PolicyDeny {
		b.Fatalf("benchmark input is denied: %+v", d)
	}
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		d := Decide(ctx, req)
		took = append(took, time.Since(start))
		if d.Outcome == rollout.PolicyDeny {
			b.Fatal(d.Deny)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkCompile measures compiling the ten policies (once per worker and policy version).
func BenchmarkCompile(b *testing.B) {
	var files []rollout.PolicyFile
	for i, src := range benchPolicies {
		files = append(files, rollout.PolicyFile{Path: fmt.Sprintf("p%02d.rego", i), Source: "package fleetwave.policy\n\n" + src + "\n"})
	}
	for b.Loop() {
		if _, err := Compile(context.Background(), files); err != nil {
			b.Fatal(err)
		}
	}
}
