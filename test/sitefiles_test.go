//go:build e2e

package test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// filesPlan keeps the fleet's sites in inventory/*.yaml, one file per site, and takes the
// canary as 1% of the fleet spread by region.
const filesPlan = `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: demo}
spec:
  siteFiles: "inventory/*.yaml"
  waves:
    - {name: canary, percent: 1, spread: region, bake: 1s}
    - {name: eu, selector: {region: eu}, bake: 1s}
    - {name: fleet, bake: 1s}
  health: {interval: 500ms, failureThreshold: 2, convergenceTimeout: 30s, unknownTimeout: 10s}
`

func inventory(region map[string]string) map[string]string {
	files := map[string]string{}
	for site, r := range region {
		files["inventory/"+site+".yaml"] = fmt.Sprintf("apiVersion: fleetwave.dev/v1alpha1\nkind: Site\nname: %s\nlabels: {region: %s}\n", site, r)
	}
	return files
}

// TestSitesKeptInFiles: membership is what the commit says. A commit that adds a site file
// rolls out to that site too; a later commit that removes it leaves its branch alone. The
// percent canary the worker promotes is the one `plan show` lists in a checkout of the commit.
// The git CLI checks the branches.
func TestSitesKeptInFiles(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	regions := map[string]string{"ams-1": "eu", "ams-2": "eu", "fra-1": "eu", "nyc-1": "us", "nyc-2": "us", "sfo-1": "us"}
	seed := inventory(regions)
	seed["fleetwave.yaml"], seed["apps/app.yaml"], seed[".fleetwave/sim.yaml"] = filesPlan, "version: 1\n", "reconcileDelay: 200ms\n"
	gs := gittest.NewServer(t, "fleet", seed, append(siteBranches(), "sites/lis-1")...)
	added := inventory(map[string]string{"lis-1": "eu"})
	added["apps/app.yaml"] = "version: 2\n"
	v2 := gs.CommitOn(t, "main", "app v2, and the Lisbon store", added)
	startServe(t, bin, tp.Address, gs.URL, nil)
	tc := dialTemporal(t, tp.Address)

	id := workflows.RolloutID("demo", v2)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", v2); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, id, 3*time.Minute); err != nil {
		t.Fatalf("rollout: %v", err)
	}
	tree := git(t, gs.Dir, "rev-parse", v2+"^{tree}")
	for _, s := range append(slices.Clone(sites), "lis-1") {
		if got := git(t, gs.Dir, "rev-parse", "sites/"+s+"^{tree}"); got != tree {
			t.Errorf("site %s is not on %s", s, rollout.Short(v2))
		}
	}
	st := statusJSON(t, bin, tp.Address, id)
	var canary []string
	for _, s := range st.Waves[0].Sites {
		canary = append(canary, s.Name)
	}

	// plan show, in a checkout of that commit, lists the same canary and where it comes from.
	dir := filepath.Join(t.TempDir(), "fleet")
	git(t, "", "clone", "--quiet", gs.URL, dir)
	git(t, dir, "checkout", "--quiet", v2)
	out, err := fleetwaveCLI(t, bin, tp.Address, "plan", "show", filepath.Join(dir, "fleetwave.yaml"), "-o", "json")
	if err != nil {
		t.Fatalf("plan show: %v\n%s", err, out)
	}
	var shown struct {
		Waves []struct {
			Name, Rule string
			Sites      []struct{ Name, From string }
		}
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("plan show: %v\n%s", err, out)
	}
	if len(shown.Waves) != 3 || len(shown.Waves[0].Sites) != 1 {
		t.Fatalf("plan show: %s", out)
	}
	want := shown.Waves[0].Sites[0]
	if !slices.Equal(canary, []string{want.Name}) || want.From != filepath.Join(dir, "inventory", want.Name+".yaml")+":1" ||
		shown.Waves[0].Rule != "1% of 7 sites (1), spread by region" {
		t.Errorf("the rollout's canary %v; plan show: %+v (rule %q)", canary, want, shown.Waves[0].Rule)
	}

	// A commit that removes the Lisbon store's file: its branch is left alone.
	lis := gs.Head(t, "sites/lis-1")
	v3 := gs.CommitOn(t, "main", "app v3, without Lisbon", map[string]string{"apps/app.yaml": "version: 3\n", "inventory/lis-1.yaml": ""})
	id3 := workflows.RolloutID("demo", v3)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", v3); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, id3, 3*time.Minute); err != nil {
		t.Fatalf("rollout of v3: %v", err)
	}
	if got := gs.Head(t, "sites/lis-1"); got != lis {
		t.Errorf("sites/lis-1 moved to %s although its site file was removed:\n%s", rollout.Short(got), git(t, gs.Dir, "log", "--oneline", lis+".."+got))
	}
	if got, want := git(t, gs.Dir, "rev-parse", "sites/sfo-1^{tree}"), git(t, gs.Dir, "rev-parse", v3+"^{tree}"); got != want {
		t.Errorf("sfo-1 is not on v3")
	}
	if n := len(statusJSON(t, bin, tp.Address, id3).Waves); n != 3 {
		t.Errorf("v3 has %d waves", n)
	}
	if strings.Contains(fmt.Sprint(statusJSON(t, bin, tp.Address, id3)), "lis-1") {
		t.Error("the v3 rollout names lis-1")
	}
}
