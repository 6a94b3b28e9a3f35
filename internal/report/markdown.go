package report

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// Markdown writes the report as a Markdown document: a summary table, then each wave's policy
// decisions, approval, sites, health gates and reverts, then the operators' controls.
func Markdown(r Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Rollout %s: %s\n\n", r.Rollout, r.State)
	if r.Simulated {
		b.WriteString("> **Simulated fleet**: this rollout ran on a simulated fleet; its health gates measured nothing real.\n\n")
	}
	b.WriteString("| | |\n|---|---|\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "| %s | %s |\n", k, v)
		}
	}
	row("Fleet", cell(r.Fleet))
	row("Commit", commitCell(r.Commit))
	row("Started by", cell(TriggerText(r.Trigger)))
	row("Plan", planCell(r.Plan))
	state := string(r.State)
	if r.Reason != "" {
		state += ": " + r.Reason
	}
	row("State", cell(state))
	row("Started", stamp(r.StartedAt))
	if !r.FinishedAt.IsZero() {
		row("Finished", stamp(r.FinishedAt)+" ("+r.Duration+")")
	}
	wf := "`" + cell(r.Workflow.ID) + "`"
	if r.Workflow.URL != "" {
		wf = "[" + wf + "](" + r.Workflow.URL + ")"
	}
	if r.Workflow.RunID != "" {
		wf += " run `" + r.Workflow.RunID + "`"
	}
	row("Workflow", wf+" in namespace `"+cell(r.Workflow.Namespace)+"`")
	row("Policy inputs", cell(inputsMissing(r.PolicyInputsError)))
	for _, w := range r.Waves {
		markdownWave(&b, w, len(r.Waves))
	}
	if len(r.CatchUps) > 0 {
		b.WriteString("\n## Catch-ups\n\nStarted as the rollout ended, one per deferred site:\n\n| Site | Workflow | State | Verdict | Reason |\n|---|---|---|---|---|\n")
		for _, c := range r.CatchUps {
			fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s |\n", cell(c.Site), cell(c.Workflow), cell(string(c.State)), cell(string(c.Verdict)), cell(c.Reason))
		}
	}
	if len(r.Controls) > 0 {
		b.WriteString("\n## Controls\n\n| At | Action | By | Reason |\n|---|---|---|---|\n")
		for _, c := range r.Controls {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", stamp(c.At), cell(c.Action), cell(c.By), cell(c.Reason))
		}
	}
	return b.String()
}

func markdownWave(b *strings.Builder, w Wave, waves int) {
	fmt.Fprintf(b, "\n## Wave %d/%d %s: %s\n\n", w.Index+1, waves, w.Name, w.State)
	var times []string
	if !w.StartedAt.IsZero() {
		times = append(times, "started "+stamp(w.StartedAt))
	}
	if !w.ConvergedAt.IsZero() {
		times = append(times, "converged "+stamp(w.ConvergedAt))
	}
	if !w.FinishedAt.IsZero() {
		times = append(times, "finished "+stamp(w.FinishedAt)+" ("+w.Duration+")")
	}
	if len(times) == 0 {
		times = []string{"not started"}
	}
	b.WriteString(capitalize(strings.Join(times, ", ")) + ".\n")
	if w.Message != "" {
		b.WriteString("\n" + cell(w.Message) + "\n")
	}
	if len(w.Policy) > 0 {
		b.WriteString("\n**Policy decisions**\n\n")
		for _, d := range w.Policy {
			fmt.Fprintf(b, "- %s: %s\n", stamp(d.At), cell(DecisionText(d.PolicyDecision)))
			if d.Input != nil {
				fmt.Fprintf(b, "  - input: %s\n", cell(InputText(*d.Input)))
			}
		}
	}
	if a := w.Approval; a != nil {
		fmt.Fprintf(b, "\n**Approval**: %s of %s; requested %s, expires %s; %s.\n",
			rollout.Count(a.Quorum, "approval"), cell(strings.Join(a.Approvers, ", ")), stamp(a.RequestedAt), stamp(a.ExpiresAt), cell(approvalOutcome(a)))
		if len(a.Votes) > 0 {
			b.WriteString("\n| Approver | Decision | Via | At | Comment |\n|---|---|---|---|---|\n")
			for _, v := range a.Votes {
				via := v.Via
				if v.Caller != "" {
					via += " (sent by " + v.Caller + ")"
				}
				fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", cell(v.By), voteWord(v), cell(via), stamp(v.At), cell(v.Comment))
			}
		}
	}
	if len(w.Sites) == 0 {
		return
	}
	b.WriteString("\n**Sites**\n\n| Site | Verdict | Promotion | Converged | Revert |\n|---|---|---|---|---|\n")
	for _, s := range w.Sites {
		revert := ""
		if s.Revert != nil {
			revert = commitLink(s.Revert.Commit, s.Revert.URL)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", cell(s.Name), s.Verdict, commitLink(s.Promotion, s.PromotionURL), stamp(s.ConvergedAt), revert)
	}
	gates := false
	for _, s := range w.Sites {
		gates = gates || len(s.Gates) > 0
	}
	if gates {
		b.WriteString("\n**Health gates**\n\n| Site | Check | Threshold | Measured | Failed | Unknown | First | Worst | Last |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range w.Sites {
			for _, g := range s.Gates {
				fmt.Fprintf(b, "| %s | %s | %s | %d | %d | %d | %s | %s | %s |\n", cell(s.Name), cell(g.Name), cell(g.Threshold),
					g.Measurements, g.Failed, g.Unknown, measurement(g.First), measurement(g.Worst), measurement(g.Last))
			}
		}
	}
	var reverts []string
	for _, s := range w.Sites {
		if r := s.Revert; r != nil {
			line := fmt.Sprintf("- %s: %s", cell(s.Name), commitLink(r.Commit, r.URL))
			if !r.At.IsZero() {
				line += " at " + stamp(r.At)
			}
			if r.Reason != "" {
				line += ": " + cell(r.Reason)
			}
			reverts = append(reverts, line)
		}
	}
	if len(reverts) > 0 {
		b.WriteString("\n**Reverts**\n\n" + strings.Join(reverts, "\n") + "\n")
	}
}

// TriggerText says in words what submitted the commit.
func TriggerText(t *rollout.Trigger) string {
	if t == nil {
		return "not recorded"
	}
	switch t.Via {
	case rollout.TriggerPush:
		out := "push event"
		if t.Host != "" && t.Host != "generic" {
			out += " from " + t.Host
		}
		var parts []string
		if t.Pusher != "" {
			parts = append(parts, "pushed by "+t.Pusher)
		}
		if t.Repository != "" {
			parts = append(parts, "repository "+t.Repository)
		}
		if t.Delivery != "" {
			parts = append(parts, "delivery "+t.Delivery)
		}
		if len(parts) > 0 {
			out += " (" + strings.Join(parts, ", ") + ")"
		}
		return out
	case rollout.TriggerCLI:
		if t.By != "" {
			return "fleetwave start, by " + t.By
		}
		return "fleetwave start"
	case rollout.TriggerPoll:
		return "the fleet's poll of its source branch"
	}
	return t.Via
}

// inputsMissing says why the decisions come without their inputs, if they do.
func inputsMissing(why string) string {
	if why == "" {
		return ""
	}
	return "not recovered from the history: " + why
}

// InputText sums up a policy input in a line: the wave's sites, how the earlier waves went,
// the approvals given so far. The JSON form of the report holds the input whole.
func InputText(in rollout.PolicyInput) string {
	parts := []string{fmt.Sprintf("wave %s, %s", in.Wave.Name, namesText(in.Wave.Sites))}
	for _, w := range in.PreviousWaves {
		counts := map[rollout.Verdict]int{}
		for _, v := range w.Verdicts {
			counts[v]++
		}
		var vs []string
		for _, v := range slices.Sorted(maps.Keys(counts)) {
			vs = append(vs, fmt.Sprintf("%d %s", counts[v], v))
		}
		parts = append(parts, fmt.Sprintf("after %s %s (%s)", w.Name, w.State, cmp.Or(strings.Join(vs, ", "), "no verdicts")))
	}
	if len(in.Approvals) == 0 {
		parts = append(parts, "no approvals")
	}
	for _, a := range in.Approvals {
		parts = append(parts, fmt.Sprintf("approved by %s via %s for %s", a.By, a.Via, a.Wave))
	}
	return strings.Join(parts, "; ")
}

// namesText counts the sites and names the first few.
func namesText(sites []rollout.PolicySite) string {
	const shown = 5
	var names []string
	for i, s := range sites {
		if i == shown {
			names = append(names, fmt.Sprintf("and %d more", len(sites)-shown))
			break
		}
		names = append(names, s.Name)
	}
	return rollout.Count(len(sites), "site") + " (" + strings.Join(names, ", ") + ")"
}

// DecisionText says what a policy decision was.
func DecisionText(d rollout.PolicyDecision) string {
	switch d.Outcome {
	case rollout.PolicyDeny:
		return "deny: " + strings.Join(d.Deny, "; ")
	case rollout.PolicyWait:
		return "wait until " + stamp(d.WaitUntil) + ": " + strings.Join(d.Reasons, "; ")
	}
	return d.Outcome
}

func approvalOutcome(a *rollout.ApprovalStatus) string {
	if a.Outcome == "" {
		return "open"
	}
	return a.Outcome
}

func voteWord(v rollout.Vote) string {
	if v.Approve {
		return "approved"
	}
	return "rejected"
}

func measurement(m *Measurement) string {
	if m == nil {
		return ""
	}
	mark := "✓"
	if !m.OK {
		mark = "✗"
	}
	return fmt.Sprintf("%g %s", m.Value, mark)
}

func commitCell(c Commit) string {
	out := commitLink(c.SHA, c.URL)
	if c.Subject != "" {
		out += " " + cell(c.Subject)
	}
	if c.Author != "" {
		out += " (" + cell(c.Author) + ")"
	}
	return out
}

func planCell(p Plan) string {
	out := "`" + cell(p.Path) + "`"
	if p.Blob != "" {
		out += " blob `" + p.Blob + "`"
	} else {
		out += " (blob not recorded)"
	}
	for _, f := range p.Policies {
		out += "; `" + cell(f.Path) + "` blob `" + f.Blob + "`"
	}
	return out
}

func commitLink(sha, url string) string {
	if sha == "" {
		return ""
	}
	out := "`" + rollout.Short(sha) + "`"
	if url != "" {
		out = "[" + out + "](" + url + ")"
	}
	return out
}

// stamp writes a time to the second, in UTC, or "" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// cell escapes text for a Markdown table cell or line.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
