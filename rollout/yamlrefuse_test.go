package rollout

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/goccy/go-yaml/parser"
)

// plan is a small valid plan with extra text in the sites' place.
func planWith(sites string) []byte {
	return []byte(`apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
spec:
  sites:` + sites + `
  waves:
    - name: all
`)
}

// TestPlanRefusesAnchorsAliasesAndTags: a plan may not use YAML anchors, aliases or tags (but
// !!str); each refusal says which, where, and why.
func TestPlanRefusesAnchorsAliasesAndTags(t *testing.T) {
	for _, tc := range []struct {
		name, sites string
		want        []string
	}{
		{"an alias bomb, small", `
    - name: a
      labels: &l {k1: v, k2: v, k3: v}
    - {name: b, labels: *l}
    - {name: c, labels: *l}`, []string{
			"f.yaml:6:15: YAML anchors (&l) are not allowed in a RolloutPlan",
			"f.yaml:7:25: YAML aliases (*l) are not allowed",
			"f.yaml:8:25: YAML aliases (*l) are not allowed"}},
		{"a tag on a scalar where a list belongs (crashed the decoder)", ` !00000 00`, []string{
			"f.yaml:4:10: YAML tags (!00000) are not allowed in a RolloutPlan (only !!str is)"}},
		{"a standard tag", `
    - name: !!int 7`, []string{"YAML tags (!!int) are not allowed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePlan("f.yaml", planWith(tc.sites))
			var pe *PlanError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a PlanError", err)
			}
			if len(pe.Issues) != len(tc.want) {
				t.Errorf("issues:\n%v\nwant %d", err, len(tc.want))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to say %q", err, w)
				}
			}
		})
	}
	if _, err := ParsePlan("f.yaml", planWith("\n    - name: !!str a")); err != nil {
		t.Errorf("!!str: %v", err)
	}
	// Nested aliases double at each level: 2^40 nodes if anything followed them. The refusal
	// reads tokens, so it answers at once, and stops at maxRefusals issues.
	var bomb strings.Builder
	bomb.WriteString("apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nx0: &a0 [y, y]\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&bomb, "x%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	_, err := ParsePlan("f.yaml", []byte(bomb.String()))
	var pe *PlanError
	if !errors.As(err, &pe) || len(pe.Issues) != maxRefusals || !strings.Contains(pe.Issues[0].Message, "YAML anchors (&a0)") {
		t.Errorf("nested aliases: %v", err)
	}
}

// TestDecoderCrashIsAnIssue: go-yaml panics on a tag on a scalar where a list belongs; the
// decoding behind every parser turns that into an issue at the document's start.
func TestDecoderCrashIsAnIssue(t *testing.T) {
	f, err := parser.ParseBytes(planWith(" !00000 00"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var doc fileDoc
	crash, _ := decode(f.Docs[0].Body, &doc)
	if crash == nil || crash.Line != 1 || !strings.Contains(crash.Message, "the YAML decoder failed") {
		t.Fatalf("crash = %+v, want an issue at line 1", crash)
	}
	// The faults and serve config parsers share the refusals.
	for _, kind := range []string{KindFaults, KindServeConfig} {
		data := fmt.Sprintf("apiVersion: fleetwave.dev/v1alpha1\nkind: %s\nspec: &s {}\n", kind)
		var err error
		if kind == KindFaults {
			_, err = ParseFaults("x.yaml", []byte(data), &Plan{})
		} else {
			_, err = ParseServeConfig("x.yaml", []byte(data))
		}
		if err == nil || !strings.Contains(err.Error(), "x.yaml:3:7: YAML anchors (&s) are not allowed in a "+kind) {
			t.Errorf("%s: %v", kind, err)
		}
	}
}

// TestSiteBranchesMustBeRefsOfTheirOwn: a site whose branch is not a valid ref, or is the
// source branch, is refused where the site is named; CheckBranches refuses the branches the
// worker keeps (the evidence branch).
func TestSiteBranchesMustBeRefsOfTheirOwn(t *testing.T) {
	plan := func(siteBranch, site string) []byte {
		return []byte(`apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
spec:
  siteBranch: "` + siteBranch + `"
  sites:
    - name: ok-1
    - name: ` + site + `
  waves:
    - name: all
`)
	}
	for _, tc := range []struct{ siteBranch, site, want string }{
		{"{site}", "main", `f.yaml:7:13: site "main": its branch "main" is the source branch`},
		{"sites/{site}", "b..c", `f.yaml:7:13: site "b..c": its branch "sites/b..c" is not a valid branch name`},
		{"sites/{site}", "x.lock", `f.yaml:7:13: site "x.lock": its branch "sites/x.lock" is not a valid branch name`},
		{"{site}/deploy", "x.lock", `site "x.lock": its branch "x.lock/deploy" is not a valid branch name`},
	} {
		_, err := ParsePlan("f.yaml", plan(tc.siteBranch, tc.site))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("siteBranch %s, site %s: %v, want %q", tc.siteBranch, tc.site, err, tc.want)
		}
	}
	p, err := ParsePlan("f.yaml", plan("{site}", "evidence"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckBranches("main", "evidence"); err == nil || !strings.Contains(err.Error(), `site evidence: its branch "evidence" is a branch fleetwave keeps`) {
		t.Errorf("CheckBranches: %v", err)
	}
	if err := p.CheckBranches("main", "fleetwave/evidence"); err != nil {
		t.Errorf("CheckBranches: %v", err)
	}
	for b, want := range map[string]bool{"sites/a": true, "a.b": true, "sites/.a": false, "a/b.lock/c": false, "a//b": false,
		"a@{1}": false, "@": false, "a.": false, "a\x01": false, "a b": false} {
		if got := ValidBranch(b); got != want {
			t.Errorf("ValidBranch(%q) = %v, want %v", b, got, want)
		}
		// git itself agrees (but for "@", a valid ref that `git branch` refuses to create).
		if err := exec.Command("git", "check-ref-format", "refs/heads/"+b).Run(); b != "@" && (err == nil) != want {
			t.Errorf("git check-ref-format refs/heads/%q: %v, want valid %v", b, err, want)
		}
	}
}
