package report

import (
	"encoding/hex"
	"strconv"
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
	if got := hex.EncodeToString(LinkKey("signing-secret")); got != "13915ed185f2c35f7249ea4dcb932b6a21a244993a33b65c9cab8e37acf96191" {
		t.Errorf("LinkKey changed (links already posted would stop working): %s", got)
	}
	key := LinkKey("secret")
	id := "rollout/demo/0123456789ab"
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	unix := strconv.FormatInt(exp.Unix(), 10)
	if !LinkValid(key, id, unix, LinkSignature(key, id, exp), now) {
		t.Fatal("a link signed for this rollout, key and expiry is refused")
	}
	for _, tt := range []struct {
		why          string
		key          []byte
		id, exp, sig string
		now          time.Time
	}{
		{"another rollout", key, "rollout/demo/ffffffffffff", unix, LinkSignature(key, id, exp), now},
		{"another key", LinkKey("other"), id, unix, LinkSignature(key, id, exp), now},
		{"no key", nil, id, unix, LinkSignature(nil, id, exp), now},
		{"expired", key, id, unix, LinkSignature(key, id, exp), exp},
		{"a later expiry than signed", key, id, strconv.FormatInt(exp.Add(time.Hour).Unix(), 10), LinkSignature(key, id, exp), exp},
		{"no expiry", key, id, "", LinkSignature(key, id, exp), now},
		{"an expiry that is no number", key, id, unix + "x", LinkSignature(key, id, exp), now},
	} {
		if LinkValid(tt.key, tt.id, tt.exp, tt.sig, tt.now) {
			t.Errorf("a report link is valid with %s", tt.why)
		}
	}
	if got := PageURL("https://fw.example/", key, id, exp); got != "https://fw.example/reports/"+id+".md?exp="+unix+"&sig="+LinkSignature(key, id, exp) {
		t.Errorf("PageURL = %s", got)
	}
	if PageURL("", key, id, exp) != "" || PageURL("https://fw.example", nil, id, exp) != "" {
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
