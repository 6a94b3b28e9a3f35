//go:build e2e

package test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/test/testenv"
)

// TestCheckOnServe: `fleetwave check` on a fresh namespace, before any worker and with a site
// branch missing, fails and says what to do for each problem; once serve runs (it registers
// the search attributes and polls) and the branch exists, it passes.
func TestCheckOnServe(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t) // no search attributes
	gs, _ := fleetRepo(t, "checked", "app v2")
	gittest.Git(t, gs.Dir, "branch", "-D", "sites/sfo-1")
	check := func() (string, error) {
		out, err := exec.Command(bin, "check", "--repo", gs.URL, "--no-sites", "--address", tp.Address).CombinedOutput()
		return string(out), err
	}
	out, err := check()
	if err == nil {
		t.Fatalf("fleetwave check passed before any worker ran:\n%s", out)
	}
	for _, want := range []string{
		"✔ repo " + gs.URL + ": main at ",
		"✗ site branches: 1 of 6 missing (sites/sfo-1); create each from the source branch: git push origin main:sites/sfo-1",
		"✔ temporal: " + tp.Address + " answers (namespace default)",
		"✗ search attributes: FleetwaveFleet, FleetwaveCommit",
		"✗ workers: none polls task queue fleetwave/checked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("fleetwave check says no %q:\n%s", want, out)
		}
	}

	startServe(t, bin, tp.Address, gs.URL, nil)
	gittest.Git(t, gs.Dir, "branch", "sites/sfo-1", gs.Seed)
	out, err = check()
	if err != nil || strings.Contains(out, "✗") {
		t.Fatalf("fleetwave check with serve running: %v\n%s", err, out)
	}
	if !strings.Contains(out, "✔ workers: 1 poll task queue fleetwave/checked") || !strings.Contains(out, "✔ search attributes: all") {
		t.Errorf("fleetwave check:\n%s", out)
	}
}
