package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

func TestGeneratedPlan(t *testing.T) {
	text, err := generatedPlan(10, 3)
	if err != nil {
		t.Fatal(err)
	}
	p, err := rollout.ParsePlan("generated.yaml", []byte(text))
	if err != nil {
		t.Fatalf("the generated plan is invalid: %v\n%s", err, text)
	}
	var names []string
	for _, w := range p.Waves {
		names = append(names, w.Name+"="+strings.Join(w.Sites, ","))
	}
	want := "canary=r1-s0001 r1=r1-s0004,r1-s0007,r1-s0010 rest=r2-s0002,r3-s0003,r2-s0005,r3-s0006,r2-s0008,r3-s0009"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("waves %s\nwant  %s", got, want)
	}
	if s, _ := p.Site("r3-s0006"); s.Labels["region"] != "r3" {
		t.Errorf("r3-s0006 labels %v", s.Labels)
	}
	// 10,000 sites: five digits, and one region gives two waves.
	text, err = generatedPlan(10000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = rollout.ParsePlan("generated.yaml", []byte(text)); err != nil || len(p.Waves) != 2 || p.Waves[1].Sites[0] != "r1-s00002" {
		t.Errorf("10,000 sites in one region: %v, waves %d", err, len(p.Waves))
	}
	for _, bad := range [][2]int{{1, 1}, {5, 0}, {5, 6}} {
		if _, err := generatedPlan(bad[0], bad[1]); err == nil {
			t.Errorf("generatedPlan(%d, %d) succeeded", bad[0], bad[1])
		}
	}
}

// TestLoadRehearsal: everything wrong with the input is found before anything starts.
func TestLoadRehearsal(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	plan := write("fleetwave.yaml", "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nspec:\n  siteFiles: sites/*.yaml\n  sites: [{name: a}]\n  waves: [{name: all}]\n")
	write(".fleetwave/policies/deny/freeze.rego", "package fleetwave.freeze\n")
	write("sites/b.yaml", "kind: Site\nname: b\n")
	in, err := loadRehearsal(rehearseOptions{plan: plan, scale: 60})
	if err != nil {
		t.Fatal(err)
	}
	// The policies and the site files come along into the rehearsal's repo, at their repo paths.
	if in.policies[".fleetwave/policies/deny/freeze.rego"] == "" || in.policies["sites/b.yaml"] == "" || in.source != plan || len(in.plan.Sites) != 2 {
		t.Errorf("input %+v", in)
	}
	faults := write("faults.yaml", "apiVersion: fleetwave.dev/v1alpha1\nkind: RehearsalFaults\nfaults:\n  - {degrade: {sites: [c]}}\n")
	for _, tt := range []struct {
		o    rehearseOptions
		want string
	}{
		{rehearseOptions{plan: plan, faults: faults, scale: 60}, `faults.yaml:4:24: "c" names no site of the plan`},
		{rehearseOptions{plan: plan, scale: 0.5}, "--time-scale 0.5: use 1"},
		{rehearseOptions{plan: plan, scale: 1000}, "use at most 300"},
		{rehearseOptions{plan: plan, sites: 5, scale: 60}, "either --plan or --sites"},
		{rehearseOptions{scale: 60}, "give the plan to rehearse"},
		{rehearseOptions{plan: write("bad.yaml", "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nspec:\n  sites: [{name: a}]\n  wavs: []\n"), scale: 60}, "bad.yaml:5:"},
	} {
		if _, err := loadRehearsal(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.want)
		}
	}
}

func TestPlanClock(t *testing.T) {
	if got := planClock(61*time.Second, 60); got != "t+01:01:00" {
		t.Errorf("planClock = %s", got)
	}
}
