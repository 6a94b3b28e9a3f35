package rollout

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestPlanLimits: a plan too large or nested too deep is refused before the YAML parser sees
// it, with its position; brackets in quotes, comments and queries do not count.
func TestPlanLimits(t *testing.T) {
	deepBlock := header + "  sites:\n    - name: a\n  waves:\n    - name: w\n  x:\n"
	for i := range 120 {
		deepBlock += strings.Repeat(" ", 4+2*i) + "- \n"
	}
	tests := []struct {
		name, doc, want string
	}{
		{"100,000 [", strings.Repeat("[", 100000), "f.yaml:1:100: the plan is nested more than 100 levels deep"},
		{"nested maps in flow", "spec: " + strings.Repeat("{a: ", 200), "f.yaml:1:"},
		{"block sequences", deepBlock, "the plan is nested more than 100 levels deep"},
		{"2 MiB", header + "# " + strings.Repeat("x", 2<<20) + "\n", "f.yaml:1:1: the plan is 2097"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePlan("f.yaml", []byte(tt.doc))
			var pe *PlanError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParsePlan = %v, want %q", err, tt.want)
			}
		})
	}
	// Brackets that are data, not structure.
	ok := header + `  sites:
    - name: a # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
  waves:
    - name: "w[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
  health:
    checks:
      - name: errors
        prometheus: {url: "http://p:9090", query: 'sum(rate(x{job="a[[[["}[5m]))', max: 1}
`
	if issue := checkLimits([]byte(ok), "plan"); issue != nil {
		t.Errorf("a plan with brackets in comments and quotes: %v", issue)
	}
	sample, err := os.ReadFile("../cmd/fleetwave/sample/fleetwave.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if issue := checkLimits(sample, "plan"); issue != nil {
		t.Errorf("the sample plan: %v", issue)
	}
}

// FuzzParsePlan: no input makes the plan parser panic; every refusal is a PlanError.
func FuzzParsePlan(f *testing.F) {
	sample, err := os.ReadFile("../cmd/fleetwave/sample/fleetwave.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	f.Add([]byte(strings.Repeat("[", 500)))
	f.Add([]byte("spec: {waves: [{name: a, maxFailures: 5%}]}"))
	f.Add([]byte("spec:\n  sites: !00000 00\n"))
	f.Add([]byte("spec:\n  sites:\n    - &a {name: a}\n    - *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePlan("f.yaml", data)
		var pe *PlanError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("error %v is not a PlanError", err)
		}
		if err == nil && p == nil {
			t.Error("no plan and no error")
		}
	})
}
