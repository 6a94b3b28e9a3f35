// Package report is the evidence of one rollout an auditor asks for: what changed, what started
// it, which policies decided what, who approved, what each site ran and measured, what was
// reverted and why, and how it ended. workflows.Client.Report builds it from the rollout's
// workflow history; this package holds its shape (kind Report, docs/report.md) and writes it as
// JSON, Markdown or one self-contained HTML file.
package report

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fleetwave/fleetwave/chatops"
	"github.com/fleetwave/fleetwave/rollout"
)

// Report is the evidence of one rollout.
type Report struct {
	rollout.TypeMeta
	Rollout string `json:"rollout"`
	Fleet   string `json:"fleet"`
	// Workflow is the rollout's workflow execution in Temporal.
	Workflow Workflow `json:"workflow"`
	Commit   Commit   `json:"commit"`
	// Trigger says what submitted the commit; absent when the history does not record it
	// (rollouts of releases before it did, rollouts started as workflows by hand).
	Trigger *rollout.Trigger `json:"trigger,omitempty"`
	Plan    Plan             `json:"plan"`
	State   rollout.State    `json:"state"`
	Reason  string           `json:"reason,omitempty"`
	// Simulated is true when the rollout ran on a simulated fleet: its health gates measured
	// nothing real.
	Simulated  bool      `json:"simulated,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Duration   string    `json:"duration,omitempty"`
	Waves      []Wave    `json:"waves,omitempty"`
	// Controls are the operators' actions (pause, resume, abort, rollback) and the
	// fleet's supersede, oldest first.
	Controls []rollout.Control `json:"controls,omitempty"`
	// PolicyInputsError says why the policies' inputs are missing from the decisions, when
	// replaying the history to recover them failed.
	PolicyInputsError string `json:"policyInputsError,omitempty"`
	// CatchUps are the catch-ups the rollout started as it ended, one per Deferred site, and
	// how each stands when the report is made (fleetwave report asks Temporal).
	CatchUps []CatchUp `json:"catchUps,omitempty"`
}

// CatchUp is a catch-up a rollout started (catchup/<fleet>/<site>): its site, its workflow
// ID, and, once known, its state, its site's verdict and why.
type CatchUp struct {
	Site     string          `json:"site"`
	Workflow string          `json:"workflow"`
	State    rollout.State   `json:"state,omitempty"`
	Verdict  rollout.Verdict `json:"verdict,omitempty"`
	Reason   string          `json:"reason,omitempty"`
}

// Workflow names the rollout's workflow execution, with its Temporal UI address when known.
type Workflow struct {
	Namespace string `json:"namespace"`
	ID        string `json:"id"`
	RunID     string `json:"runID,omitempty"`
	URL       string `json:"url,omitempty"`
}

// Commit is the source commit rolled out.
type Commit struct {
	SHA     string `json:"sha"`
	Subject string `json:"subject,omitempty"`
	Author  string `json:"author,omitempty"`
	URL     string `json:"url,omitempty"`
}

// Plan identifies the plan and policies the rollout ran by, at the commit: git blob hashes
// (`git rev-parse <commit>:fleetwave.yaml`).
type Plan struct {
	Path     string `json:"path"`
	Blob     string `json:"blob,omitempty"`
	Policies []File `json:"policies,omitempty"`
}

// File is a file of the fleet repo at the commit and its git blob hash.
type File struct {
	Path string `json:"path"`
	Blob string `json:"blob"`
}

// Wave is what happened in one wave.
type Wave struct {
	Name        string        `json:"name"`
	Index       int           `json:"index"`
	State       rollout.State `json:"state"`
	StartedAt   time.Time     `json:"startedAt,omitzero"`
	ConvergedAt time.Time     `json:"convergedAt,omitzero"`
	FinishedAt  time.Time     `json:"finishedAt,omitzero"`
	Duration    string        `json:"duration,omitempty"`
	Message     string        `json:"message,omitempty"`
	// Policy lists every policy decision taken before the wave, oldest first (a wave that
	// waits is decided again when its wait ends).
	Policy   []Decision              `json:"policy,omitempty"`
	Approval *rollout.ApprovalStatus `json:"approval,omitempty"`
	Sites    []Site                  `json:"sites,omitempty"`
}

// Decision is one policy decision and the input the policies decided on: the same document
// Rego sees as input.
type Decision struct {
	rollout.PolicyDecision
	Input *rollout.PolicyInput `json:"input,omitempty"`
}

// Site is what happened to one site of a wave.
type Site struct {
	Name    string          `json:"name"`
	Branch  string          `json:"branch"`
	Verdict rollout.Verdict `json:"verdict"`
	// Promotion is the promotion commit on the site branch, Previous the head it replaced.
	Promotion    string `json:"promotion,omitempty"`
	PromotionURL string `json:"promotionURL,omitempty"`
	Previous     string `json:"previous,omitempty"`
	// ConvergedAt is when the site was first seen running the promotion, ready and healthy.
	ConvergedAt time.Time `json:"convergedAt,omitzero"`
	Message     string    `json:"message,omitempty"`
	Gates       []Gate    `json:"gates,omitempty"`
	Revert      *Revert   `json:"revert,omitempty"`
}

// Revert is the revert commit written for a site, or the Problem that kept it from being
// written (the branch is gone, a later commit changed what the promotion changed).
type Revert struct {
	Commit  string    `json:"commit,omitempty"`
	Problem string    `json:"problem,omitempty"`
	URL     string    `json:"url,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// Gate is one health check of one site over the rollout: its first, worst and last
// measurement against its threshold. A wave reports a site's measurements to its rollout when
// they change (in a wave of up to 20 sites any new value, in a larger one a check that passes
// or fails where it did not), so Measurements counts the measurements that differed from the
// one before, not the health rounds, and Failed and Unknown those that failed or could not
// measure.
type Gate struct {
	Name         string       `json:"name"`
	Threshold    string       `json:"threshold,omitempty"`
	Measurements int          `json:"measurements"`
	Failed       int          `json:"failed,omitempty"`
	Unknown      int          `json:"unknown,omitempty"`
	First        *Measurement `json:"first,omitempty"`
	Worst        *Measurement `json:"worst,omitempty"`
	Last         *Measurement `json:"last,omitempty"`
}

// Measurement is one value a check measured.
type Measurement struct {
	Value float64   `json:"value"`
	OK    bool      `json:"ok"`
	At    time.Time `json:"at,omitzero"`
}

// Measure adds one round of the check to the gate.
func (g *Gate) Measure(c rollout.CheckResult, at time.Time) {
	if c.Threshold != "" {
		g.Threshold = c.Threshold
	}
	if c.Unknown {
		g.Unknown++
		return
	}
	if !c.At.IsZero() {
		at = c.At
	}
	m := &Measurement{Value: c.Value, OK: c.OK, At: at}
	g.Measurements++
	if !c.OK {
		g.Failed++
	}
	if g.First == nil {
		g.First = m
	}
	g.Last = m
	if g.Worst == nil || worse(*m, *g.Worst, g.Threshold) {
		g.Worst = m
	}
}

// worse reports whether measurement a is worse than b under threshold: a failure is worse
// than a pass; otherwise the value farther on the failing side of a one-sided threshold
// ("<= 0.01": the higher), and for any other threshold ("== 0", a range, an HTTP status) the
// earlier one stands.
func worse(a, b Measurement, threshold string) bool {
	if a.OK != b.OK {
		return !a.OK
	}
	upper := strings.Contains(threshold, "<")
	lower := strings.Contains(threshold, ">")
	switch {
	case upper && !lower:
		return a.Value > b.Value
	case lower && !upper:
		return a.Value < b.Value
	case strings.HasPrefix(threshold, "=="):
		if want, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(threshold, "==")), 64); err == nil {
			return math.Abs(a.Value-want) > math.Abs(b.Value-want)
		}
	}
	return false
}

// Links makes the report's links: the Temporal UI's base URL and a commit URL template with
// {sha} ("https://github.com/acme/fleet/commit/{sha}"). Either may be "": no such links.
type Links struct {
	UI     string
	Commit string
}

// CommitURL returns the address of a commit, or "".
func (l Links) CommitURL(sha string) string {
	if l.Commit == "" || sha == "" {
		return ""
	}
	return strings.ReplaceAll(l.Commit, "{sha}", url.PathEscape(sha))
}

// WorkflowURL returns the Temporal UI address of a workflow run, or "".
func (l Links) WorkflowURL(namespace, id, runID string) string {
	if l.UI == "" {
		return ""
	}
	u := strings.TrimSuffix(l.UI, "/") + "/namespaces/" + url.PathEscape(namespace) + "/workflows/" + url.PathEscape(id)
	if runID != "" {
		u += "/" + url.PathEscape(runID) + "/history"
	}
	return u
}

// Link fills the report's URLs from l.
func (r *Report) Link(l Links) {
	r.Workflow.URL = l.WorkflowURL(r.Workflow.Namespace, r.Workflow.ID, r.Workflow.RunID)
	r.Commit.URL = l.CommitURL(r.Commit.SHA)
	for i := range r.Waves {
		for j := range r.Waves[i].Sites {
			s := &r.Waves[i].Sites[j]
			s.PromotionURL = l.CommitURL(s.Promotion)
			if s.Revert != nil {
				s.Revert.URL = l.CommitURL(s.Revert.Commit)
			}
		}
	}
}

// Duration formats the time from start to end as the report writes durations ("1m30s"),
// or "" when either is unknown.
func Duration(start, end time.Time) string {
	if start.IsZero() || end.IsZero() || end.Before(start) {
		return ""
	}
	d := end.Sub(start)
	switch {
	case d >= time.Minute:
		d = d.Round(time.Second)
	case d >= time.Second:
		d = d.Round(10 * time.Millisecond)
	default:
		d = d.Round(time.Millisecond)
	}
	return d.String()
}

// JSON writes the report as indented JSON, the shape docs/report.md documents.
func JSON(r Report) ([]byte, error) {
	out, err := json.MarshalIndent(r, "", "  ")
	return append(out, '\n'), err
}

// LinkKey derives the key that signs report links from the Slack signing secret, which every
// server of a Slack app has; nil when there is none (no links).
func LinkKey(signingSecret string) []byte {
	return chatops.DeriveKey(signingSecret, "fleetwave report link v1")
}

// LinkSignature is the signature of the report link of rollout id that expires at expires:
// whoever has the link (the rollout's Slack thread) may read the report until then, nobody can
// make one for another rollout or a later expiry.
func LinkSignature(key []byte, id string, expires time.Time) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "\n" + strconv.FormatInt(expires.Unix(), 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// LinkValid reports whether sig is the signature of rollout id's report link expiring at exp
// (Unix seconds, as the link gives it), and that it has not expired at now.
func LinkValid(key []byte, id, exp, sig string, now time.Time) bool {
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || len(key) == 0 || !now.Before(time.Unix(unix, 0)) {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(LinkSignature(key, id, time.Unix(unix, 0))))
}

// PageURL is the address of rollout id's Markdown report on a fleetwave server reached at
// base (its public URL), signed with key and valid until expires; "" without base or key.
func PageURL(base string, key []byte, id string, expires time.Time) string {
	if base == "" || len(key) == 0 {
		return ""
	}
	return strings.TrimSuffix(base, "/") + "/reports/" + id + ".md?exp=" + strconv.FormatInt(expires.Unix(), 10) + "&sig=" + LinkSignature(key, id, expires)
}
