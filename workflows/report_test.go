package workflows

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/internal/schematest"
	"github.com/fleetwave/fleetwave/rollout"
)

var update = flag.Bool("update", false, "rewrite the golden reports in testdata/reports")

// recordedReport builds the report of a recorded rollout history.
func recordedReport(t *testing.T, name string) report.Report {
	t.Helper()
	base := filepath.Join("testdata", "histories", name)
	id, err := os.ReadFile(base + ".id")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := BuildReport(report.Workflow{Namespace: "default", ID: strings.TrimSpace(string(id)), RunID: "0190f0aa-0000-7000-8000-000000000001"}, h.GetEvents(), nil)
	if err != nil {
		t.Fatalf("report of %s: %v", name, err)
	}
	r.Link(report.Links{UI: "http://127.0.0.1:8233", Commit: "https://git.example.com/acme/fleet/commit/{sha}"})
	return r
}

// TestReportGolden builds the reports of four recorded rollouts, in their three forms, and
// compares them with the files in testdata/reports (go test -run TestReportGolden -update
// rewrites them; read the diff before committing it).
func TestReportGolden(t *testing.T) {
	var names []string
	for _, tag := range []string{"engine-v2", "evidence"} {
		for _, c := range []string{"rollout-approval", "rollout-reverted", "rollout-paused", "rollout-policy"} {
			names = append(names, c+"."+tag)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			r := recordedReport(t, name)
			js, err := report.JSON(r)
			if err != nil {
				t.Fatal(err)
			}
			html, err := report.HTML(r)
			if err != nil {
				t.Fatal(err)
			}
			checkSVG(t, html, len(r.Waves))
			schematest.Check(t, "Report", js)
			golden := strings.TrimSuffix(name, ".engine-v2") // the first goldens were named after their case alone
			for ext, got := range map[string][]byte{".json": js, ".md": []byte(report.Markdown(r)), ".html": html} {
				path := filepath.Join("testdata", "reports", golden+ext)
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from what the history gives; got:\n%s", path, got)
				}
			}
		})
	}
}

// TestReportFacts checks, in each recorded case, the facts the golden files must hold, so an
// -update cannot bless a report that lost them.
func TestReportFacts(t *testing.T) {
	for _, tag := range []string{"engine-v2", "evidence"} {
		t.Run(tag, func(t *testing.T) { reportFacts(t, tag) })
	}
	// Rollouts of releases that record them say what started them and which plan they ran.
	approval := recordedReport(t, "rollout-approval.evidence")
	if tr := approval.Trigger; tr == nil || tr.Via != rollout.TriggerPush || tr.Host != "generic" || len(approval.Plan.Blob) != 40 {
		t.Errorf("approval: trigger %+v, plan %+v", tr, approval.Plan)
	}
}

func reportFacts(t *testing.T, tag string) {
	approval := recordedReport(t, "rollout-approval."+tag)
	if approval.State != rollout.StateSucceeded || len(approval.Waves) != 3 {
		t.Fatalf("approval: %s with %d waves", approval.State, len(approval.Waves))
	}
	var votes []rollout.Vote
	for _, w := range approval.Waves {
		if w.Approval != nil {
			votes = append(votes, w.Approval.Votes...)
		}
		for _, s := range w.Sites {
			if s.Promotion == "" || s.ConvergedAt.IsZero() || s.PromotionURL != "https://git.example.com/acme/fleet/commit/"+s.Promotion {
				t.Errorf("approval: site %s: promotion %q at %s, url %q", s.Name, s.Promotion, s.ConvergedAt, s.PromotionURL)
			}
		}
	}
	if len(votes) != 1 || votes[0].By != "U0LEAD" || votes[0].Via != "slack" || !votes[0].Approve || votes[0].At.IsZero() {
		t.Errorf("approval: votes %+v", votes)
	}
	if approval.Commit.Subject == "" || approval.Commit.Author == "" || !strings.HasPrefix(approval.Workflow.URL, "http://127.0.0.1:8233/namespaces/default/workflows/rollout%2Fdemo%2F") {
		t.Errorf("approval: commit %+v, workflow %+v", approval.Commit, approval.Workflow)
	}

	reverted := recordedReport(t, "rollout-reverted."+tag)
	canary := reverted.Waves[0]
	if reverted.State != rollout.StateFailed || len(canary.Sites) != 1 {
		t.Fatalf("reverted: %s, canary %+v", reverted.State, canary)
	}
	s := canary.Sites[0]
	if s.Verdict != rollout.VerdictReverted || s.Revert == nil || s.Revert.Commit == "" || s.Revert.At.IsZero() ||
		!strings.Contains(s.Revert.Reason, "check sim failed") {
		t.Errorf("reverted: site %+v, revert %+v", s, s.Revert)
	}
	if len(s.Gates) != 1 || s.Gates[0].Name != "sim" || s.Gates[0].Failed < 2 || s.Gates[0].Worst == nil || s.Gates[0].Worst.OK || s.Gates[0].Threshold != "== 0" {
		t.Errorf("reverted: gates %+v", s.Gates)
	}

	paused := recordedReport(t, "rollout-paused."+tag)
	var actions []string
	for _, c := range paused.Controls {
		actions = append(actions, c.Action)
		if c.By == "" || c.At.IsZero() {
			t.Errorf("paused: control %+v has no author or time", c)
		}
	}
	if paused.State != rollout.StateSucceeded || strings.Join(actions, ",") != "pause,resume" {
		t.Errorf("paused: %s with controls %v", paused.State, actions)
	}

	denied := recordedReport(t, "rollout-policy."+tag)
	var outcomes []string
	for _, w := range denied.Waves {
		var o []string
		for _, d := range w.Policy {
			o = append(o, d.Outcome)
		}
		outcomes = append(outcomes, w.Name+":"+strings.Join(o, ","))
	}
	if denied.State != rollout.StateFailed || strings.Join(outcomes, " ") != "canary:allow eu-west:wait,allow fleet:deny" {
		t.Errorf("denied: %s with decisions %v", denied.State, outcomes)
	}
	if d := denied.Waves[2].Policy; len(d) != 1 || len(d[0].Deny) != 1 || d[0].Deny[0] != "the fleet wave is closed in this test" {
		t.Errorf("denied: the fleet wave's decision %+v", d)
	}
}

// checkSVG checks that the page's timeline is well-formed XML with a row of bars per wave.
func checkSVG(t *testing.T, page []byte, waves int) {
	t.Helper()
	start, end := bytes.Index(page, []byte("<svg")), bytes.Index(page, []byte("</svg>"))
	if start < 0 || end < start {
		t.Fatal("the page has no timeline")
	}
	dec := xml.NewDecoder(bytes.NewReader(page[start : end+len("</svg>")]))
	labels := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("timeline: %v", err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "text" {
			labels++
		}
	}
	if labels != waves+5 { // a name per wave, five ticks
		t.Errorf("timeline has %d labels for %d waves", labels, waves)
	}
}
