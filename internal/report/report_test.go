package report

import (
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

func TestGateWorst(t *testing.T) {
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		threshold string
		values    []float64
		fail      []bool
		worst     float64
	}{
		{"<= 0.01", []float64{0.001, 0.004, 0.002}, []bool{false, false, false}, 0.004},
		{">= 0.99", []float64{0.999, 0.991, 0.995}, []bool{false, false, false}, 0.991},
		{"== 0", []float64{0, 2, 1}, []bool{false, true, true}, 2},
		{"<= 0.01", []float64{0.5, 0.02, 0.001}, []bool{true, true, false}, 0.5},
		// A failure outranks a passing value farther on the failing side.
		{"status 200", []float64{200, 503, 200}, []bool{false, true, false}, 503},
	} {
		var g Gate
		for i, v := range tt.values {
			g.Measure(rollout.CheckResult{Name: "c", OK: !tt.fail[i], Value: v, Threshold: tt.threshold}, at.Add(time.Duration(i)*time.Minute))
		}
		g.Measure(rollout.CheckResult{Name: "c", Unknown: true, Threshold: tt.threshold}, at.Add(time.Hour))
		if g.Worst == nil || g.Worst.Value != tt.worst || g.First.Value != tt.values[0] || g.Last.Value != tt.values[len(tt.values)-1] ||
			g.Measurements != len(tt.values) || g.Unknown != 1 {
			t.Errorf("%s %v: %+v (worst %+v), want worst %g", tt.threshold, tt.values, g, g.Worst, tt.worst)
		}
	}
}

func TestLinks(t *testing.T) {
	key := LinkKey("secret")
	id := "rollout/demo/0123456789ab"
	if !LinkValid(key, id, LinkSignature(key, id)) || LinkValid(key, "rollout/demo/ffffffffffff", LinkSignature(key, id)) ||
		LinkValid(LinkKey("other"), id, LinkSignature(key, id)) || LinkValid(nil, id, LinkSignature(nil, id)) {
		t.Error("a report link is valid for another rollout or key, or without a key")
	}
	if got := PageURL("https://fw.example/", key, id); got != "https://fw.example/reports/"+id+".md?sig="+LinkSignature(key, id) {
		t.Errorf("PageURL = %s", got)
	}
	if PageURL("", key, id) != "" || PageURL("https://fw.example", nil, id) != "" {
		t.Error("a page URL without a public URL or a key")
	}
	l := Links{UI: "http://ui:8233/", Commit: "https://git.example/acme/fleet/commit/{sha}"}
	if got := l.WorkflowURL("default", "rollout/demo/a", "run-1"); got != "http://ui:8233/namespaces/default/workflows/rollout%2Fdemo%2Fa/run-1/history" {
		t.Errorf("WorkflowURL = %s", got)
	}
	if got := l.CommitURL("abc"); got != "https://git.example/acme/fleet/commit/abc" {
		t.Errorf("CommitURL = %s", got)
	}
}
