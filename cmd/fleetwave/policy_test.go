package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fleetDir writes a plan and policy files (path → content, relative to the fleet root).
func fleetDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for path, content := range files {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const policyPlan = planHeader + `  sites:
    - {name: ams-1, labels: {tier: canary}, timezone: Europe/Amsterdam}
    - {name: nyc-1, timezone: America/New_York}
    - {name: pci-1, labels: {tier: pci}}
  waves:
    - {name: canary, selector: {tier: canary}, bake: 1h}
    - {name: us, sites: [nyc-1], bake: 30m}
    - {name: rest}
  policies:
    freezes:
      - {name: black-friday, start: "2025-11-28T00:00:00", timezone: America/New_York, duration: 96h, rrule: "FREQ=YEARLY;BYMONTH=11;BYDAY=+4FR", waves: [us]}
    businessHours: {start: "09:00", end: "17:00", waves: [canary]}
`

const pciPolicy = `package fleetwave.policy

deny contains msg if {
	some site in input.wave.sites
	site.labels.tier == "pci"
	msg := sprintf("site %s is PCI: roll out to it by hand", [site.name])
}
`

func TestPlanShowAt(t *testing.T) {
	dir := fleetDir(t, map[string]string{"fleetwave.yaml": policyPlan, ".fleetwave/policies/pci.rego": pciPolicy})
	plan := filepath.Join(dir, "fleetwave.yaml")

	// Wednesday before Thanksgiving, 06:00 UTC: 07:00 in Amsterdam, so the canary waits for
	// 09:00; after its hour of bake it is 09:00 in New York on Wednesday: not frozen yet.
	out, _, err := run(t, "plan", "show", plan, "--at", "2026-11-25T06:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"canary  ams-1  1             1h0m0s  1h0m0s, 121 rounds  sites/ams-1  waits, starts 2026-11-25T08:00:00Z: business hours at every site of wave canary from 2026-11-25T08:00:00Z",
		"us      nyc-1  1             30m0s   30m0s, 61 rounds    sites/nyc-1  starts 2026-11-25T09:00:00Z",
		"rest    pci-1  1             0s      1 clean round       sites/pci-1  denied: site pci-1 is PCI: roll out to it by hand",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan show --at does not contain %q:\n%s", want, out)
		}
	}

	// On Black Friday the us wave waits for the freeze to end (Tuesday 05:00 UTC).
	out, _, err = run(t, "plan", "show", plan, "--at", "2026-11-27T10:00:00Z", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v planView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	us := v.Waves[1].Policy
	if us == nil || us.Outcome != "wait" || us.Start.UTC().Format("2006-01-02T15:04:05Z") != "2026-12-01T05:00:00Z" ||
		!strings.Contains(strings.Join(us.Reasons, ";"), "freeze black-friday until 2026-12-01T05:00:00Z") {
		t.Errorf("us wave on Black Friday: %+v", us)
	}
	if rest := v.Waves[2].Policy; rest == nil || rest.Outcome != "deny" {
		t.Errorf("rest wave: %+v", rest)
	}

	// A plan without policies shows no policy column; a bad --at is an error.
	plain := fleetDir(t, map[string]string{"fleetwave.yaml": planHeader + "  sites: [{name: a}]\n  waves: [{name: w}]\n"})
	if out, _, _ := run(t, "plan", "show", filepath.Join(plain, "fleetwave.yaml")); strings.Contains(out, "POLICY") {
		t.Errorf("policy column without policies:\n%s", out)
	}
	if _, _, err := run(t, "plan", "show", plan, "--at", "tomorrow"); err == nil {
		t.Error("--at tomorrow accepted")
	}
}

func TestPlanShowAtBrokenPolicy(t *testing.T) {
	dir := fleetDir(t, map[string]string{"fleetwave.yaml": policyPlan, ".fleetwave/policies/pci.rego": "package fleetwave.policy\n\ndeny contains msg if {\n  msg := nope()\n}\n"})
	_, stderr, err := run(t, "plan", "show", filepath.Join(dir, "fleetwave.yaml"))
	if err == nil || !strings.HasPrefix(stderr, filepath.Join(dir, ".fleetwave/policies/pci.rego")+":4:") {
		t.Errorf("err %v, stderr %q; want the file and line", err, stderr)
	}
}

func TestPolicyTest(t *testing.T) {
	tests := `package fleetwave.policy_test

import data.fleetwave.policy

test_pci_is_denied if {
	policy.deny == {"site p is PCI: roll out to it by hand"} with input as {"wave": {"sites": [{"name": "p", "labels": {"tier": "pci"}}]}}
}

test_others_pass if {
	count(policy.deny) == 0 with input as {"wave": {"sites": [{"name": "a", "labels": {}}]}}
}
`
	dir := fleetDir(t, map[string]string{"p/pci.rego": pciPolicy, "p/pci_test.rego": tests})
	out, _, err := run(t, "policy", "test", filepath.Join(dir, "p"))
	if err != nil {
		t.Fatalf("policy test: %v\n%s", err, out)
	}
	if !strings.Contains(out, "PASS  "+filepath.Join(dir, "p/pci_test.rego")+":5 data.fleetwave.policy_test.test_pci_is_denied") || !strings.Contains(out, "2/2 passed") {
		t.Errorf("output:\n%s", out)
	}

	failing := strings.Replace(tests, `"site p is PCI`, `"site q is PCI`, 1)
	dir = fleetDir(t, map[string]string{"p/pci.rego": pciPolicy, "p/pci_test.rego": failing})
	out, _, err = run(t, "policy", "test", filepath.Join(dir, "p"))
	if err == nil || !strings.Contains(out, "FAIL  "+filepath.Join(dir, "p/pci_test.rego")+":5") || !strings.Contains(out, "1/2 passed") {
		t.Errorf("failing test: err %v\n%s", err, out)
	}

	dir = fleetDir(t, map[string]string{"p/pci.rego": "package fleetwave.policy\n\ndeny contains x if {\n"})
	_, stderr, err := run(t, "policy", "test", filepath.Join(dir, "p"))
	if err == nil || !strings.HasPrefix(stderr, filepath.Join(dir, "p/pci.rego")+":") {
		t.Errorf("broken policy: err %v, stderr %q", err, stderr)
	}
}
