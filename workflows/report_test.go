package workflows

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/internal/schematest"
	"github.com/fleetwave/fleetwave/rollout"
)

var update = flag.Bool("update", false, "rewrite the golden reports in testdata/reports")

// recordedReport builds the report of a recorded rollout history.
func recordedReport(t *testing.T, name string) report.Report {
	t.Helper()
	exec, events := recordedHistory(t, name)
	r, err := BuildReport(exec, events, nil)
	if err != nil {
		t.Fatalf("report of %s: %v", name, err)
	}
	r.Link(report.Links{UI: "http://127.0.0.1:8233", Commit: "https://git.example.com/acme/fleet/commit/{sha}"})
	return r
}

// recordedHistory reads a recorded rollout history and names its execution.
func recordedHistory(t *testing.T, name string) (report.Workflow, []*historypb.HistoryEvent) {
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
	return report.Workflow{Namespace: "default", ID: strings.TrimSpace(string(id)), RunID: "0190f0aa-0000-7000-8000-000000000001"}, h.GetEvents()
}

// TestReportPolicyInputs: each decision comes with the input its policies saw, recovered by
// replaying the history: the wave's sites, the earlier waves' verdicts, the approvals so far,
// the decision's own time. The approval wave is decided twice; only the second saw the vote.
func TestReportPolicyInputs(t *testing.T) {
	for _, tag := range []string{"engine-v2", "evidence", "chunk"} {
		r := recordedReport(t, "rollout-approval."+tag)
		if r.PolicyInputsError != "" {
			t.Fatalf("%s: %s", tag, r.PolicyInputsError)
		}
		eu := r.Waves[1].Policy
		if len(eu) != 2 || eu[0].Input == nil || eu[1].Input == nil {
			t.Fatalf("%s: eu-west decisions %+v", tag, eu)
		}
		for _, d := range eu {
			in := d.Input
			if in.Wave.Name != "eu-west" || len(in.Wave.Sites) != 2 || !in.Now.Equal(d.At) || in.Rollout.ID != r.Rollout ||
				len(in.PreviousWaves) != 1 || in.PreviousWaves[0].Verdicts["ams-1"] != rollout.VerdictHealthy {
				t.Errorf("%s: eu-west input %+v", tag, in)
			}
		}
		if a := eu[0].Input.Approvals; len(a) != 0 {
			t.Errorf("%s: the decision before the approval saw approvals %+v", tag, a)
		}
		if a := eu[1].Input.Approvals; len(a) != 1 || a[0].By != "U0LEAD" || a[0].Wave != "eu-west" {
			t.Errorf("%s: the decision after the approval saw approvals %+v", tag, a)
		}
		fleet := r.Waves[2].Policy
		if len(fleet) != 1 || fleet[0].Input == nil || len(fleet[0].Input.PreviousWaves) != 2 || len(fleet[0].Input.Approvals) != 1 {
			t.Errorf("%s: fleet decision %+v", tag, fleet)
		}
	}
}

// A running rollout's history ends wherever the report reads it, inside a workflow task too
// (only a task's commands are written together with its completion): every decision made by
// then has its input, and none is made up.
func TestReportPolicyInputsOfRunningRollout(t *testing.T) {
	exec, events := recordedHistory(t, "rollout-approval.evidence")
	final := recordedReport(t, "rollout-approval.evidence")
	st := rollout.Status{Rollout: final.Rollout, Fleet: final.Fleet, Commit: final.Commit.SHA}
	for _, w := range final.Waves {
		st.Waves = append(st.Waves, rollout.WaveStatus{Name: w.Name, Index: w.Index})
	}
	decisions, cuts := 0, 0
	for i := 2; i < len(events)-1; i++ {
		if m := events[i].GetMarkerRecordedEventAttributes(); m != nil && m.GetMarkerName() == "LocalActivity" {
			decisions++ // EvaluatePolicy is the rollout's only local activity
		}
		if commandEvent(events, i+1) {
			continue // the server writes a task's commands with its completion
		}
		cuts++
		r, err := BuildReport(exec, events[:i+1], &st)
		if err != nil {
			t.Fatalf("report of the first %d events: %v", i+1, err)
		}
		if r.PolicyInputsError != "" {
			t.Fatalf("report of the first %d events: %s", i+1, r.PolicyInputsError)
		}
		got := 0
		for _, w := range r.Waves {
			for _, d := range w.Policy {
				if d.Input == nil || !d.Input.Now.Equal(d.At) {
					t.Errorf("first %d events: decision %+v without its input", i+1, d)
				}
				got++
			}
		}
		if got != decisions {
			t.Errorf("first %d events: %d decisions in the report, %d markers", i+1, got, decisions)
		}
	}
	if decisions < 4 || cuts < 20 {
		t.Errorf("%d decisions over %d cuts: not the history expected", decisions, cuts)
	}
	t.Logf("%d decisions, the history cut at %d points", decisions, cuts)
}

// commandEvent says whether events[i] records a command of the workflow task completed just
// before it.
func commandEvent(events []*historypb.HistoryEvent, i int) bool {
	for j := i; j > 0; j-- {
		switch events[j].GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			return j < i
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, enumspb.EVENT_TYPE_MARKER_RECORDED, enumspb.EVENT_TYPE_TIMER_STARTED,
			enumspb.EVENT_TYPE_TIMER_CANCELED, enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
			enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED, enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
			enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED, enumspb.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
			continue
		}
		return false
	}
	return false
}

// A history the workflow code cannot replay still gives its report, saying why the inputs
// are missing rather than failing.
func TestReportPolicyInputsUnreplayable(t *testing.T) {
	exec, events := recordedHistory(t, "rollout-approval.evidence")
	for _, ev := range events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "LoadPlan" {
			a.ActivityType.Name = "LoadSomethingElse"
		}
	}
	r, err := BuildReport(exec, events, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.PolicyInputsError, "replay") || r.State != rollout.StateSucceeded {
		t.Fatalf("state %s, inputs error %q", r.State, r.PolicyInputsError)
	}
	for _, w := range r.Waves {
		for _, d := range w.Policy {
			if d.Input != nil {
				t.Errorf("wave %s: an input despite the failed replay", w.Name)
			}
		}
	}
	if md := report.Markdown(r); !strings.Contains(md, "| Policy inputs | not recovered from the history: replay") {
		t.Errorf("the Markdown does not say the inputs are missing:\n%s", md)
	}
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
	for _, tag := range []string{"engine-v2", "evidence", "chunk"} {
		t.Run(tag, func(t *testing.T) { reportFacts(t, tag) })
	}
	// Rollouts of releases that record them say what started them and which plan they ran.
	approval := recordedReport(t, "rollout-approval.evidence")
	if tr := approval.Trigger; tr == nil || tr.Via != rollout.TriggerPush || tr.Host != "generic" || len(approval.Plan.Blob) != 40 {
		t.Errorf("approval: trigger %+v, plan %+v", tr, approval.Plan)
	}
	// Each vote names the Temporal identity that sent it, as the history's UpdateAccepted has it.
	for _, w := range approval.Waves {
		if a := w.Approval; a != nil {
			for _, v := range a.Votes {
				if v.Caller == "" {
					t.Errorf("approval: vote %+v names no caller", v)
				}
			}
		}
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

// Reports are built concurrently (report pages, evidence of several rollouts in one worker):
// each replay has its own replayer, so they give what one at a time gives (run with -race).
func TestReportsConcurrently(t *testing.T) {
	names := []string{"rollout-approval.evidence", "rollout-policy.evidence", "rollout-approval.chunk", "rollout-policy.chunk"}
	want := map[string][]byte{}
	for _, n := range names {
		js, err := report.JSON(recordedReport(t, n))
		if err != nil {
			t.Fatal(err)
		}
		want[n] = js
	}
	var wg sync.WaitGroup
	for range 3 {
		for _, n := range names {
			exec, events := recordedHistory(t, n)
			wg.Go(func() {
				r, err := BuildReport(exec, events, nil)
				if err != nil {
					t.Error(err)
					return
				}
				r.Link(report.Links{UI: "http://127.0.0.1:8233", Commit: "https://git.example.com/acme/fleet/commit/{sha}"})
				if js, err := report.JSON(r); err != nil || !bytes.Equal(js, want[n]) {
					t.Errorf("%s built concurrently differs (%v)", n, err)
				}
			})
		}
	}
	wg.Wait()
}
