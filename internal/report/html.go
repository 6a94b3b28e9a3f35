package report

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// HTML writes the report as one self-contained HTML page (no scripts, no outside resources)
// with an SVG timeline of the waves, to attach to a change ticket.
func HTML(r Report) ([]byte, error) {
	var buf bytes.Buffer
	err := page.Execute(&buf, struct {
		Report
		Timeline timeline
	}{r, newTimeline(r)})
	return buf.Bytes(), err
}

// The timeline's geometry, in SVG user units.
const (
	tlWidth     = 960
	tlLabel     = 150 // the wave names' column
	tlRowHeight = 34
	tlTop       = 26
	tlBottom    = 30
)

type timeline struct {
	Width, Height int
	Rows          []tlRow
	Marks         []tlMark
	Ticks         []tlTick
}

type tlRow struct {
	Y, TextY int
	Label    string
	Bars     []tlBar
}

type tlBar struct {
	X, Width float64
	Class    string
	Title    string
}

type tlMark struct {
	X     float64
	Class string
	Title string
}

type tlTick struct {
	X      float64
	Label  string
	Anchor string // where the label sits on X: start, middle, end
}

// newTimeline lays the waves out on the rollout's time: a bar for each wave's policy wait,
// approval wait and run (colored by how it ended), a mark for each revert and control.
func newTimeline(r Report) timeline {
	start, end := r.StartedAt, r.FinishedAt
	for _, w := range r.Waves {
		for _, t := range []time.Time{w.StartedAt, w.FinishedAt} {
			if !t.IsZero() && (start.IsZero() || t.Before(start)) {
				start = t
			}
			if t.After(end) {
				end = t
			}
		}
	}
	tl := timeline{Width: tlWidth, Height: tlTop + tlRowHeight*len(r.Waves) + tlBottom}
	if start.IsZero() || !end.After(start) {
		end = start.Add(time.Second)
	}
	span := float64(end.Sub(start))
	x := func(t time.Time) float64 {
		if t.Before(start) {
			t = start
		}
		return math.Round((tlLabel+float64(t.Sub(start))/span*float64(tlWidth-tlLabel-10))*10) / 10
	}
	bar := func(from, to time.Time, class, title string) tlBar {
		if to.IsZero() || to.Before(from) {
			to = end
		}
		w := math.Round((x(to)-x(from))*10) / 10
		if w < 2 {
			w = 2
		}
		return tlBar{X: x(from), Width: w, Class: class, Title: title}
	}
	for i, w := range r.Waves {
		row := tlRow{Y: tlTop + i*tlRowHeight + 6, TextY: tlTop + i*tlRowHeight + 22, Label: fmt.Sprintf("%d. %s", w.Index+1, w.Name)}
		if len(w.Policy) > 0 && !w.Policy[0].At.IsZero() {
			if waitEnd := firstNonZero(w.StartedAt, w.FinishedAt); w.Policy[0].Outcome == rollout.PolicyWait || waitEnd.After(w.Policy[0].At.Add(time.Second)) {
				row.Bars = append(row.Bars, bar(w.Policy[0].At, waitEnd, "wait", "policy: "+DecisionText(w.Policy[len(w.Policy)-1].PolicyDecision)))
			}
		}
		if last := len(w.Policy) - 1; last >= 0 && w.Policy[last].Outcome == rollout.PolicyDeny && !w.Policy[last].At.IsZero() {
			row.Bars = append(row.Bars, tlBar{X: x(w.Policy[last].At), Width: 4, Class: "deny", Title: "policy: " + DecisionText(w.Policy[last].PolicyDecision)})
		}
		if a := w.Approval; a != nil && !a.RequestedAt.IsZero() {
			until := firstNonZero(w.StartedAt, w.FinishedAt)
			row.Bars = append(row.Bars, bar(a.RequestedAt, until, "approval", "approval: "+approvalOutcome(a)))
		}
		if !w.StartedAt.IsZero() {
			row.Bars = append(row.Bars, bar(w.StartedAt, w.FinishedAt, stateClass(w.State), fmt.Sprintf("%s: %s, %s", w.Name, w.State, w.Duration)))
		}
		for _, s := range w.Sites {
			if s.Revert != nil && !s.Revert.At.IsZero() {
				tl.Marks = append(tl.Marks, tlMark{X: x(s.Revert.At), Class: "revert", Title: "revert of " + s.Name + " (" + rollout.Short(s.Revert.Commit) + ")"})
			}
		}
		tl.Rows = append(tl.Rows, row)
	}
	for _, c := range r.Controls {
		if !c.At.IsZero() {
			tl.Marks = append(tl.Marks, tlMark{X: x(c.At), Class: "control", Title: c.Action + " by " + c.By})
		}
	}
	for i := 0; i <= 4; i++ {
		t := start.Add(time.Duration(float64(end.Sub(start)) * float64(i) / 4))
		tl.Ticks = append(tl.Ticks, tlTick{X: x(t), Label: "+" + Duration(start, t), Anchor: "middle"})
	}
	tl.Ticks[0].Label, tl.Ticks[0].Anchor = start.UTC().Format("15:04:05Z"), "start"
	tl.Ticks[4].Anchor = "end"
	return tl
}

func firstNonZero(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

func stateClass(s rollout.State) string {
	switch s {
	case rollout.StateSucceeded:
		return "ok"
	case rollout.StateFailed, rollout.StateRolledBack:
		return "bad"
	case rollout.StateAborted, rollout.StateSuperseded, rollout.StateTerminated, rollout.StateCancelled, rollout.StateTimedOut:
		return "stopped"
	}
	return "running"
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp":    stamp,
	"short":    rollout.Short,
	"trigger":  TriggerText,
	"decision": DecisionText,
	"input":    InputText,
	"missing":  inputsMissing,
	"outcome":  approvalOutcome,
	"vote":     voteWord,
	"measure":  measurement,
	"count":    rollout.Count,
	"plus1":    func(i int) int { return i + 1 },
	"class":    stateClass,
	"gates": func(sites []Site) bool {
		for _, s := range sites {
			if len(s.Gates) > 0 {
				return true
			}
		}
		return false
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Rollout {{.Rollout}}: {{.State}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1000px;color:#1b1f24;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font:12px ui-monospace,monospace;background:#f6f8fa;padding:0 .2em}
.state-ok{color:#1a7f37}.state-bad{color:#cf222e}.state-stopped{color:#6e7781}.state-running{color:#0969da}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.5em}
svg text{font:12px system-ui,sans-serif;fill:#1b1f24}
svg .ok{fill:#2da44e}svg .bad{fill:#cf222e}svg .stopped{fill:#8c959f}svg .running{fill:#0969da}
svg .wait{fill:#d0d7de}svg .deny{fill:#cf222e}svg .approval{fill:#d4a72c}svg .revert{stroke:#cf222e;stroke-width:2}svg .control{stroke:#8250df;stroke-width:2;stroke-dasharray:4 3}
svg .tick{stroke:#d0d7de}
</style>
</head>
<body>
<h1>Rollout <code>{{.Rollout}}</code>: <span class="state-{{class .State}}">{{.State}}</span></h1>
{{if .Simulated}}<p class="note"><strong>Simulated fleet</strong>: this rollout ran on a simulated fleet; its health gates measured nothing real.</p>{{end}}
<table>
<tr><th>Fleet</th><td>{{.Fleet}}</td></tr>
<tr><th>Commit</th><td>{{if .Commit.URL}}<a href="{{.Commit.URL}}"><code>{{.Commit.SHA}}</code></a>{{else}}<code>{{.Commit.SHA}}</code>{{end}} {{.Commit.Subject}}{{if .Commit.Author}} ({{.Commit.Author}}){{end}}</td></tr>
<tr><th>Started by</th><td>{{trigger .Trigger}}</td></tr>
<tr><th>Plan</th><td><code>{{.Plan.Path}}</code> {{if .Plan.Blob}}blob <code>{{.Plan.Blob}}</code>{{else}}(blob not recorded){{end}}{{range .Plan.Policies}}<br><code>{{.Path}}</code> blob <code>{{.Blob}}</code>{{end}}</td></tr>
<tr><th>State</th><td><span class="state-{{class .State}}">{{.State}}</span>{{if .Reason}}: {{.Reason}}{{end}}</td></tr>
<tr><th>Started</th><td>{{stamp .StartedAt}}</td></tr>
{{if not .FinishedAt.IsZero}}<tr><th>Finished</th><td>{{stamp .FinishedAt}} ({{.Duration}})</td></tr>{{end}}
<tr><th>Workflow</th><td>{{if .Workflow.URL}}<a href="{{.Workflow.URL}}"><code>{{.Workflow.ID}}</code></a>{{else}}<code>{{.Workflow.ID}}</code>{{end}}{{if .Workflow.RunID}} run <code>{{.Workflow.RunID}}</code>{{end}} in namespace <code>{{.Workflow.Namespace}}</code></td></tr>
{{if .PolicyInputsError}}<tr><th>Policy inputs</th><td>{{missing .PolicyInputsError}}</td></tr>
{{end}}</table>
{{with .Timeline}}{{if .Rows}}
<h2>Timeline</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="timeline of the waves">
{{range .Ticks}}<line class="tick" x1="{{.X}}" y1="14" x2="{{.X}}" y2="{{$.Timeline.Height}}"/><text x="{{.X}}" y="11" text-anchor="{{.Anchor}}">{{.Label}}</text>
{{end}}{{range .Rows}}<text x="4" y="{{.TextY}}">{{.Label}}</text>
{{$y := .Y}}{{range .Bars}}<rect class="{{.Class}}" x="{{.X}}" y="{{$y}}" width="{{.Width}}" height="22" rx="3"><title>{{.Title}}</title></rect>
{{end}}{{end}}{{range .Marks}}<line class="{{.Class}}" x1="{{.X}}" y1="18" x2="{{.X}}" y2="{{$.Timeline.Height}}"><title>{{.Title}}</title></line>
{{end}}</svg>
<p>Grey: a policy held the wave; a red notch: a policy denied it. Amber: it waited for approval. Green, red, blue, grey: the wave ran and succeeded, failed, runs, stopped. Red lines: reverts. Purple dashes: operators' controls.</p>
{{end}}{{end}}
{{$n := len .Waves}}{{range .Waves}}
<h2>Wave {{plus1 .Index}}/{{$n}} {{.Name}}: <span class="state-{{class .State}}">{{.State}}</span></h2>
<p>{{if not .StartedAt.IsZero}}Started {{stamp .StartedAt}}{{else}}Not started{{end}}{{if not .ConvergedAt.IsZero}}, converged {{stamp .ConvergedAt}}{{end}}{{if not .FinishedAt.IsZero}}, finished {{stamp .FinishedAt}} ({{.Duration}}){{end}}.{{if .Message}}<br>{{.Message}}{{end}}</p>
{{if .Policy}}<h3>Policy decisions</h3><ul>{{range .Policy}}<li>{{stamp .At}}: {{decision .PolicyDecision}}{{with .Input}}<br><small>input: {{input .}}</small>{{end}}</li>{{end}}</ul>{{end}}
{{with .Approval}}<h3>Approval</h3><p>{{count .Quorum "approval"}} of {{range $i, $a := .Approvers}}{{if $i}}, {{end}}{{$a}}{{end}}; requested {{stamp .RequestedAt}}, expires {{stamp .ExpiresAt}}; {{outcome .}}.</p>
{{if .Votes}}<table><tr><th>Approver</th><th>Decision</th><th>Via</th><th>At</th><th>Comment</th></tr>{{range .Votes}}<tr><td>{{.By}}</td><td>{{vote .}}</td><td>{{.Via}}{{with .Caller}} (sent by {{.}}){{end}}</td><td>{{stamp .At}}</td><td>{{.Comment}}</td></tr>{{end}}</table>{{end}}{{end}}
{{if .Sites}}<h3>Sites</h3>
<table><tr><th>Site</th><th>Verdict</th><th>Promotion</th><th>Converged</th><th>Revert</th></tr>
{{range .Sites}}<tr><td>{{.Name}}</td><td>{{.Verdict}}</td><td>{{if .PromotionURL}}<a href="{{.PromotionURL}}"><code>{{short .Promotion}}</code></a>{{else if .Promotion}}<code>{{short .Promotion}}</code>{{end}}</td><td>{{stamp .ConvergedAt}}</td><td>{{with .Revert}}{{if .URL}}<a href="{{.URL}}"><code>{{short .Commit}}</code></a>{{else}}<code>{{short .Commit}}</code>{{end}}{{end}}</td></tr>
{{end}}</table>
{{if gates .Sites}}<h3>Health gates</h3>
<table><tr><th>Site</th><th>Check</th><th>Threshold</th><th>Measured</th><th>Failed</th><th>Unknown</th><th>First</th><th>Worst</th><th>Last</th></tr>
{{range $s := .Sites}}{{range .Gates}}<tr><td>{{$s.Name}}</td><td>{{.Name}}</td><td>{{.Threshold}}</td><td>{{.Measurements}}</td><td>{{.Failed}}</td><td>{{.Unknown}}</td><td>{{measure .First}}</td><td>{{measure .Worst}}</td><td>{{measure .Last}}</td></tr>
{{end}}{{end}}</table>{{end}}
{{range $s := .Sites}}{{with .Revert}}<p>Reverted <strong>{{$s.Name}}</strong> with <code>{{.Commit}}</code>{{if not .At.IsZero}} at {{stamp .At}}{{end}}{{if .Reason}}: {{.Reason}}{{end}}</p>
{{end}}{{end}}{{end}}{{end}}
{{if .CatchUps}}<h2>Catch-ups</h2>
<p>Started as the rollout ended, one per deferred site:</p>
<table><tr><th>Site</th><th>Workflow</th><th>State</th><th>Verdict</th><th>Reason</th></tr>{{range .CatchUps}}<tr><td>{{.Site}}</td><td><code>{{.Workflow}}</code></td><td>{{.State}}</td><td>{{.Verdict}}</td><td>{{.Reason}}</td></tr>{{end}}</table>
{{end}}{{if .Controls}}<h2>Controls</h2>
<table><tr><th>At</th><th>Action</th><th>By</th><th>Reason</th></tr>{{range .Controls}}<tr><td>{{stamp .At}}</td><td>{{.Action}}</td><td>{{.By}}</td><td>{{.Reason}}</td></tr>{{end}}</table>{{end}}
</body>
</html>
`))
