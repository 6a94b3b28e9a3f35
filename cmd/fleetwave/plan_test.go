package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/policy"
)

const samplePlan = "sample/fleetwave.yaml"

// run runs the command line as main does and returns what it wrote.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = Run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

const planHeader = `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata:
  name: demo
spec:
`

// Broken plans; line numbers in the comments count from the header's first line.
var brokenPlans = map[string]string{
	"unknown-field.yaml": planHeader + `  sites:
    - name: a
  waves:
    - name: w
      bake: 10s
      parallel: 2
`, // line 11, col 7: "parallel"
	"bad-duration.yaml": planHeader + `  sites:
    - name: a
  waves:
    - name: w
      bake: 10 minutes
  health:
    interval: 1d
`, // 10:13 "10 minutes", 12:15 "1d"
	"no-wave.yaml": planHeader + `  sites:
    - name: a
    - name: b
  waves:
    - name: one
      sites: [a]
`, // 8:13 site b
}

func writePlans(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, doc := range brokenPlans {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkIssues checks that stderr is exactly one "<path>:<line>:<col>: <message>" line per want,
// in order; each want is "path\x00line:col: message start".
func checkIssues(t *testing.T, stderr string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if stderr == "" {
		lines = nil
	}
	if len(lines) != len(want) {
		t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(want), stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("stderr line %d = %q, want it to start with %q", i+1, lines[i], w)
		}
	}
}

func TestPlanValidate(t *testing.T) {
	dir := writePlans(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name       string
		files      []string
		wantOut    []string // stdout lines
		wantIssues []string // stderr line prefixes
	}{
		{
			name:    "sample plan",
			files:   []string{samplePlan},
			wantOut: []string{samplePlan + ": valid: 6 sites in 3 waves"},
		},
		{
			name:       "unknown field",
			files:      []string{p("unknown-field.yaml")},
			wantIssues: []string{p("unknown-field.yaml") + `:11:7: unknown field "parallel"`},
		},
		{
			name:  "bad durations, every one reported in file order",
			files: []string{p("bad-duration.yaml")},
			wantIssues: []string{
				p("bad-duration.yaml") + `:10:13: invalid duration "10 minutes"`,
				p("bad-duration.yaml") + `:12:15: invalid duration "1d"`,
			},
		},
		{
			name:       "site in no wave",
			files:      []string{p("no-wave.yaml")},
			wantIssues: []string{p("no-wave.yaml") + `:8:13: site "b" is in no wave`},
		},
		{
			name:       "one good file and one bad",
			files:      []string{samplePlan, p("no-wave.yaml")},
			wantOut:    []string{samplePlan + ": valid: 6 sites in 3 waves"},
			wantIssues: []string{p("no-wave.yaml") + `:8:13: site "b" is in no wave`},
		},
		{
			name:       "a bad file does not stop the files after it",
			files:      []string{p("unknown-field.yaml"), samplePlan, p("no-wave.yaml")},
			wantOut:    []string{samplePlan + ": valid: 6 sites in 3 waves"},
			wantIssues: []string{p("unknown-field.yaml") + ":11:7: ", p("no-wave.yaml") + ":8:13: "},
		},
		{
			name:       "missing file",
			files:      []string{p("nope.yaml")},
			wantIssues: []string{"open " + p("nope.yaml") + ": no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := run(t, append([]string{"plan", "validate"}, tt.files...)...)
			if len(tt.wantIssues) == 0 {
				if err != nil {
					t.Fatalf("plan validate: %v\nstderr:\n%s", err, stderr)
				}
			} else if !errors.Is(err, errSilent) {
				// errSilent: the problems are on stderr already and main exits 1 without adding any.
				t.Errorf("plan validate returned %v, want errSilent", err)
			}
			var gotOut []string
			if stdout != "" {
				gotOut = strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			}
			if diff := cmp.Diff(tt.wantOut, gotOut); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			checkIssues(t, stderr, tt.wantIssues)
		})
	}
}

func TestPlanValidateNeedsAFile(t *testing.T) {
	if _, _, err := run(t, "plan", "validate"); err == nil || errors.Is(err, errSilent) {
		t.Errorf("plan validate without files: %v, want a usage error", err)
	}
}

var samplePlanView = planView{TypeMeta: rollout.Meta(kindPlanSummary),
	Fleet:        "demo",
	SourceBranch: "main",
	Waves: []waveView{
		{
			Name:        "canary",
			Rule:        "selector {tier=canary}",
			Sites:       []siteView{{Name: "ams-1", Branch: "sites/ams-1", Labels: map[string]string{"region": "eu-west", "tier": "canary"}, From: samplePlan}},
			MaxParallel: 1,
			Bake:        "10s",
			Gate:        "10s, 6 rounds",
			Batches:     [][]string{{"ams-1"}},
		},
		{
			Name: "eu-west", Rule: "selector {region=eu-west}",
			Sites: []siteView{
				{Name: "ams-2", Branch: "sites/ams-2", Labels: map[string]string{"region": "eu-west"}, From: samplePlan},
				{Name: "fra-1", Branch: "sites/fra-1", Labels: map[string]string{"region": "eu-west"}, From: samplePlan},
			},
			MaxParallel: 1,
			Bake:        "10s",
			Gate:        "10s, 6 rounds",
			Batches:     [][]string{{"ams-2"}, {"fra-1"}},
		},
		{
			Name: "fleet", Rule: "the remaining sites",
			Sites: []siteView{
				{Name: "nyc-1", Branch: "sites/nyc-1", Labels: map[string]string{"region": "us-east"}, From: samplePlan},
				{Name: "nyc-2", Branch: "sites/nyc-2", Labels: map[string]string{"region": "us-east"}, From: samplePlan},
				{Name: "sfo-1", Branch: "sites/sfo-1", Labels: map[string]string{"region": "us-west"}, From: samplePlan},
			},
			MaxParallel: 2,
			Bake:        "5s",
			Gate:        "5s, 4 rounds",
			Batches:     [][]string{{"nyc-1", "nyc-2"}, {"sfo-1"}},
		},
	},
}

func TestPlanShowJSON(t *testing.T) {
	stdout, stderr, err := run(t, "plan", "show", samplePlan, "-o", "json", "--at", "2026-11-27T09:00:00Z")
	if err != nil {
		t.Fatalf("plan show: %v\n%s", err, stderr)
	}
	var got planView
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
	// The sample's policy (canary-only.rego) lets every wave start, each after the last bake.
	want := samplePlanView
	want.Waves = slices.Clone(want.Waves)
	for i, start := range []string{"09:00:00", "09:00:10", "09:00:20"} {
		at, _ := time.Parse(time.RFC3339, "2026-11-27T"+start+"Z")
		want.Waves[i].Policy = &policy.WavePreview{Wave: want.Waves[i].Name, Outcome: "allow", Start: at}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan show -o json (-want +got):\n%s", diff)
	}
}

func TestPlanShowText(t *testing.T) {
	t.Chdir("sample") // no FILE: ./fleetwave.yaml
	stdout, stderr, err := run(t, "plan", "show", "--at", "2026-11-27T09:00:00Z")
	if err != nil {
		t.Fatalf("plan show: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	want := [][]string{
		{"WAVE", "SITES", "MAX", "PARALLEL", "BAKE", "GATE", "BRANCHES", "POLICY"},
		{"canary", "ams-1", "1", "10s", "10s,", "6", "rounds", "sites/ams-1", "starts", "2026-11-27T09:00:00Z"},
		{"eu-west", "ams-2,fra-1", "1", "10s", "10s,", "6", "rounds", "sites/ams-2,sites/fra-1", "starts", "2026-11-27T09:00:10Z"},
		{"fleet", "nyc-1,nyc-2,sfo-1", "2", "5s", "5s,", "4", "rounds", "sites/nyc-1,sites/nyc-2,sites/sfo-1", "starts", "2026-11-27T09:00:20Z"},
	}
	var got [][]string
	for _, l := range lines {
		got = append(got, strings.Fields(l))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan show (-want +got):\n%s", diff)
	}
}

func TestPlanShowErrors(t *testing.T) {
	dir := writePlans(t)
	t.Run("unknown output format", func(t *testing.T) {
		_, _, err := run(t, "plan", "show", samplePlan, "-o", "yaml")
		if err == nil || !strings.Contains(err.Error(), `"yaml"`) {
			t.Errorf("plan show -o yaml: %v, want an error naming the format", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.yaml")
		_, _, err := run(t, "plan", "show", missing)
		if err == nil || errors.Is(err, errSilent) || !strings.Contains(err.Error(), missing) {
			t.Errorf("plan show on a missing file: %v, want an error naming it", err)
		}
	})
	t.Run("broken plan", func(t *testing.T) {
		bad := filepath.Join(dir, "no-wave.yaml")
		stdout, stderr, err := run(t, "plan", "show", bad, "-o", "json")
		if !errors.Is(err, errSilent) {
			t.Errorf("plan show on a broken plan: %v, want errSilent", err)
		}
		if stdout != "" {
			t.Errorf("stdout = %q, want nothing", stdout)
		}
		checkIssues(t, stderr, []string{bad + `:8:13: site "b" is in no wave`})
	})
}

func TestStartRejectsPartialCommits(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"branch name", []string{"start", "--fleet", "demo", "main"}, "full commit hash"},
		{"short hash", []string{"start", "--fleet", "demo", "0123456"}, "full commit hash"},
		{"no fleet", []string{"start", "0123456789abcdef0123456789abcdef01234567"}, "--fleet is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Both fail before dialing Temporal: none runs in this test.
			_, _, err := run(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v: %v, want an error mentioning %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestPlanShowApprovals(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fleetwave.yaml")
	plan := `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
spec:
  sites: [{name: a}, {name: b}]
  waves:
    - {name: one, sites: [a]}
    - {name: rest, approval: {approvers: [U012ABC, "@sre-leads"], quorum: 2, timeout: 4h, onTimeout: pause}}
`
	if err := os.WriteFile(file, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "plan", "show", file)
	if err != nil {
		t.Fatalf("plan show: %v\n%s", err, stderr)
	}
	want := "WAVE  SITES  MAX PARALLEL  BAKE  GATE           BRANCHES  APPROVAL\n" +
		"one   a      1             0s    1 clean round  sites/a   -\n" +
		"rest  b      1             0s    1 clean round  sites/b   2 of U012ABC,@sre-leads within 4h0m0s, else pause\n"
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("plan show (-want +got):\n%s", diff)
	}
}

func TestPlanShowFailureBudgets(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fleetwave.yaml")
	plan := `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
spec:
  sites: [{name: a}, {name: b}, {name: c}, {name: d}]
  waves:
    - {name: one, sites: [a]}
    - {name: two, sites: [b], maxFailures: 1}
    - {name: rest, maxFailures: 50%}
`
	if err := os.WriteFile(file, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "plan", "show", file)
	if err != nil {
		t.Fatalf("plan show: %v\n%s", err, stderr)
	}
	want := "WAVE  SITES  MAX PARALLEL  BAKE  GATE           BRANCHES         MAX FAILURES\n" +
		"one   a      1             0s    1 clean round  sites/a          0\n" +
		"two   b      1             0s    1 clean round  sites/b          1 (1 site)\n" +
		"rest  c,d    2             0s    1 clean round  sites/c,sites/d  50% (1 site)\n"
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("plan show (-want +got):\n%s", diff)
	}
	stdout, _, err = run(t, "plan", "show", file, "-o", "json")
	var v struct {
		Waves []struct {
			MaxFailures     string `json:"maxFailures"`
			FailuresAllowed int    `json:"failuresAllowed"`
		} `json:"waves"`
	}
	if err != nil || json.Unmarshal([]byte(stdout), &v) != nil || len(v.Waves) != 3 || v.Waves[2].MaxFailures != "50%" || v.Waves[2].FailuresAllowed != 1 {
		t.Errorf("plan show -o json: %v %s", err, stdout)
	}
}

// TestPlanValidateCompilesPolicies: a policy the worker would refuse (a call outside the
// sandbox, a syntax error) fails validate with its position, as the rollout would fail.
func TestPlanValidateCompilesPolicies(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "fleetwave.yaml")
	if err := os.WriteFile(plan, []byte(planHeader+"  sites:\n    - name: a\n  waves:\n    - name: w\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, err := run(t, "plan", "validate", plan); err != nil || !strings.Contains(stdout, "valid") {
		t.Fatalf("a plan without policies: %v\n%s%s", err, stdout, stderr)
	}
	pdir := filepath.Join(dir, ".fleetwave", "policies")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	rego := filepath.Join(pdir, "net.rego")
	src := "package fleetwave.policy\n\ndeny contains msg if {\n  msg := http.send({\"method\": \"get\", \"url\": \"http://169.254.169.254/\"}).raw_body\n}\n"
	if err := os.WriteFile(rego, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "plan", "validate", plan)
	if !errors.Is(err, errSilent) || strings.Contains(stdout, "valid") {
		t.Fatalf("validate of a plan with a policy calling http.send: %v\n%s", err, stdout)
	}
	if !strings.HasPrefix(stderr, rego+":4:") || !strings.Contains(stderr, "http.send") {
		t.Errorf("stderr %q, want the policy's file:line:col and the call", stderr)
	}
}

// TestREADMEPlanShow: the README shows `fleetwave plan show` in the sample repo as it prints
// (times differ with the hour it runs: they are compared as TIME).
func TestREADMEPlanShow(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- output of: fleetwave plan show, in the sample repo -->\n```\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no block marked as the output of fleetwave plan show")
	}
	out, stderr, err := run(t, "plan", "show", samplePlan)
	if err != nil {
		t.Fatalf("plan show: %v\n%s", err, stderr)
	}
	times := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	if got, want := times.ReplaceAllString(out, "TIME"), times.ReplaceAllString(string(m[1]), "TIME"); got != want {
		t.Errorf("README.md shows:\n%s\nfleetwave plan show prints:\n%s", m[1], out)
	}
}

// TestPlanValidateWarnsShortBake: a bake shorter than a failure streak is valid, with a warning
// on the line that names the wave.
func TestPlanValidateWarnsShortBake(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fleetwave.yaml")
	plan := `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
spec:
  sites: [{name: a}, {name: b}]
  waves:
    - name: canary
      sites: [a]
      bake: 30s
    - name: rest
      bake: 5m
`
	if err := os.WriteFile(file, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "plan", "validate", file)
	if err != nil || !strings.Contains(stdout, "valid: 2 sites in 2 waves") {
		t.Fatalf("plan validate: %v\n%s%s", err, stdout, stderr)
	}
	want := file + ":6:13: warning: wave canary: bake 30s is shorter than (failureThreshold - 1) × interval = 1m0s"
	if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "warning") != 1 {
		t.Errorf("stderr:\n%s\nwant one warning starting %q", stderr, want)
	}
}

// A plan that keeps its sites in files: plan validate reads them next to the plan, names the
// file and line of a problem in them, and plan show says where each site comes from.
func TestPlanWithSiteFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plan := filepath.Join(dir, "fleetwave.yaml")
	write("fleetwave.yaml", "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: shops}\nspec:\n"+
		"  siteFiles: sites/*.yaml\n  waves:\n    - {name: canary, percent: 1, spread: region}\n    - {name: rest}\n")
	for i := range 20 {
		write(fmt.Sprintf("sites/s-%02d.yaml", i), fmt.Sprintf("kind: Site\nname: s-%02d\nlabels: {region: r%d}\n", i, i%2))
	}
	stdout, stderr, err := run(t, "plan", "validate", plan)
	if err != nil || !strings.Contains(stdout, "valid: 20 sites in 2 waves") {
		t.Fatalf("plan validate: %v\n%s%s", err, stdout, stderr)
	}
	stdout, _, err = run(t, "plan", "show", plan, "--sites")
	if err != nil {
		t.Fatal(err)
	}
	canary := 0
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "canary" {
			canary++
			if !strings.Contains(line, "1% of 20 sites (1), spread by region") || !strings.Contains(line, "sites/s-") || !strings.HasSuffix(line, ".yaml:1") {
				t.Errorf("canary line %q", line)
			}
		}
	}
	if canary != 1 {
		t.Errorf("%d canary sites, want 1:\n%s", canary, stdout)
	}

	write("sites/zz.yaml", "# a copy\nkind: Site\nname: s-03\n")
	_, stderr, err = run(t, "plan", "validate", plan)
	checkIssues(t, stderr, []string{filepath.Join(dir, "sites/zz.yaml") + `:3:7: duplicate site name "s-03" (first defined at ` + filepath.Join(dir, "sites/s-03.yaml") + `:2:7)`})
	if err == nil {
		t.Error("plan validate passed a site defined twice")
	}
}
