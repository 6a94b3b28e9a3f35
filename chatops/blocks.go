package chatops

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/slack-go/slack"

	"github.com/fleetwave/fleetwave/rollout"
)

// Links makes links to rollouts in the Temporal UI.
type Links struct {
	// UI is the Temporal UI's base URL ("http://127.0.0.1:8233"); "" means no links.
	UI        string
	Namespace string
	// Report returns the address of a rollout's report (docs/report.md); nil means no links.
	Report func(rollout string) string
}

// Rollout returns the Temporal UI address of a rollout, or "".
func (l Links) Rollout(id string) string {
	if l.UI == "" {
		return ""
	}
	ns := l.Namespace
	if ns == "" {
		ns = "default"
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimSuffix(l.UI, "/"), url.PathEscape(ns), url.PathEscape(id))
}

// HeaderBlocks is the thread's first message: the rollout and a line per wave.
func HeaderBlocks(st rollout.Status, l Links) []slack.Block {
	title := fmt.Sprintf("%s *Rollout of `%s` to fleet %s*: %s", stateIcon(st.State), rollout.Short(st.Commit), esc(st.Fleet), st.State)
	if st.Subject != "" {
		title += "\n> " + esc(st.Subject)
	}
	var waves []string
	for _, w := range st.Waves {
		line := fmt.Sprintf("%s *%s* (%s) %s", stateIcon(w.State), esc(w.Name), rollout.Count(len(w.Sites), "site"), w.State)
		// A wave's own message (why it failed, what it waits for) outranks how it was approved.
		switch a := w.Approval; {
		case a != nil && (w.State == rollout.StateApproval || w.Message == "" || w.Message == a.Summary()):
			line += ": " + approvalLine(a)
		case w.Message != "":
			line += ": " + esc(w.Message)
		}
		waves = append(waves, line)
	}
	blocks := []slack.Block{slack.NewSectionBlock(mrkdwn(title), nil, nil)}
	if len(waves) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(strings.Join(waves, "\n")), nil, nil))
	}
	var ctx []string
	if link := l.Rollout(st.Rollout); link != "" {
		ctx = append(ctx, fmt.Sprintf("<%s|%s in the Temporal UI>", link, esc(st.Rollout)))
	} else {
		ctx = append(ctx, "`"+esc(st.Rollout)+"`")
	}
	if st.Reason != "" {
		ctx = append(ctx, esc(st.Reason))
	}
	blocks = append(blocks, slack.NewContextBlock("", mrkdwn(strings.Join(ctx, " · "))))
	return blocks
}

// EventBlocks is the reply for an event, and its plain-text fallback.
func EventBlocks(ev rollout.Event, st rollout.Status, l Links) ([]slack.Block, string) {
	ws := wave(st, ev.Wave)
	var text string
	switch ev.Kind {
	case rollout.EventWaveStarted:
		text = fmt.Sprintf(":arrow_forward: Wave *%s* started: promoting %s (%s)", esc(ev.Wave), rollout.Count(len(ws.Sites), "site"), esc(siteNames(ws)))
	case rollout.EventWaveFinished:
		if ws.State == rollout.StateSucceeded {
			text = fmt.Sprintf(":white_check_mark: Wave *%s* succeeded: %s healthy through the bake", esc(ev.Wave), rollout.Count(len(ws.Sites), "site"))
		} else {
			text = fmt.Sprintf(":x: Wave *%s* %s", esc(ev.Wave), words(ws.State))
			if ws.Message != "" {
				text += ": " + esc(ws.Message)
			}
		}
	case rollout.EventReverted:
		text = fmt.Sprintf(":rotating_light: Wave *%s*: reverted through git", esc(ev.Wave))
		for _, s := range ws.Sites {
			if s.Verdict != rollout.VerdictReverted && s.Verdict != rollout.VerdictDegraded {
				continue
			}
			text += fmt.Sprintf("\n• *%s*", esc(s.Name))
			if s.Revert != "" {
				text += fmt.Sprintf(" (revert `%s`)", rollout.Short(s.Revert))
			}
			if why := degradation(s); why != "" {
				text += ": " + esc(why)
			}
		}
		if st.Reason != "" {
			text += "\nReason: " + esc(st.Reason)
		}
	case rollout.EventFinished:
		switch {
		case st.CatchUp != nil:
			// A catch-up's end, in the thread of the rollout that deferred its site.
			text = fmt.Sprintf("%s Catch-up of *%s* to `%s` %s", stateIcon(st.State), esc(st.CatchUp.Site), rollout.Short(st.Commit), words(st.State))
			if v := st.CatchUpVerdict(); v != "" {
				text += ": " + string(v)
			}
			if st.Reason != "" {
				text += "; " + esc(st.Reason)
			}
		case st.State == rollout.StateSucceeded:
			text = fmt.Sprintf(":tada: Rolled out `%s` to every wave", rollout.Short(st.Commit))
			if st.Reason != "" {
				text += "; " + esc(st.Reason) // the Deferred sites
			}
		default:
			text = fmt.Sprintf("%s Rollout %s", stateIcon(st.State), words(st.State))
			if st.Reason != "" {
				text += ": " + esc(st.Reason)
			}
		}
		var links []string
		if link := l.Rollout(st.Rollout); link != "" {
			links = append(links, fmt.Sprintf("<%s|Temporal UI>", link))
		}
		if l.Report != nil {
			if link := l.Report(st.Rollout); link != "" {
				links = append(links, fmt.Sprintf("<%s|report>", esc(link))) // Slack reads &amp; in a link as &
			}
		}
		if len(links) > 0 {
			text += " (" + strings.Join(links, ", ") + ")"
		}
	case rollout.EventApprovalReminder:
		text = reminderText(st, ev.Wave)
	case rollout.EventCancelled:
		text = fmt.Sprintf(":black_square_for_stop: The rollout's workflow was cancelled in Temporal while %s", words(st.State))
		if st.Wave != "" {
			text += " (wave " + esc(st.Wave) + ")"
		}
		text += "; nothing more is promoted."
	default:
		text = fmt.Sprintf("%s %s", esc(ev.Kind), esc(ev.Wave))
	}
	if st.CatchUp != nil && ev.Kind != rollout.EventFinished {
		text = fmt.Sprintf("Catch-up of *%s*: %s", esc(st.CatchUp.Site), text)
	}
	return []slack.Block{slack.NewSectionBlock(mrkdwn(text), nil, nil)}, fallback(text)
}

// ApprovalBlocks is an approval request: who may approve, until when, and the Approve and
// Reject buttons while it is open; once decided the buttons give way to the decision.
func ApprovalBlocks(st rollout.Status, waveName string) ([]slack.Block, string) {
	ws := wave(st, waveName)
	a := ws.Approval
	if a == nil {
		a = &rollout.ApprovalStatus{}
	}
	who := approverMentions(a)
	sites := rollout.Count(len(ws.Sites), "site")
	var text string
	switch a.Outcome {
	case "":
		text = fmt.Sprintf(":raised_hand: Wave *%s* (%s) needs %s from %s, until %s",
			esc(waveName), sites, rollout.Count(a.Quorum, "approval"), strings.Join(who, ", "), slackTime(a.ExpiresAt))
	case rollout.ApprovalApproved:
		text = fmt.Sprintf(":white_check_mark: Wave *%s* (%s) approved (%d of %d approvals)", esc(waveName), sites, a.Approvals(), a.Quorum)
	case rollout.ApprovalRejected:
		text = fmt.Sprintf(":no_entry: Wave *%s* (%s) rejected", esc(waveName), sites)
	case rollout.ApprovalWithdrawn:
		text = fmt.Sprintf(":heavy_minus_sign: Wave *%s* (%s): approval request withdrawn, the rollout stopped", esc(waveName), sites)
	default: // expired, unmet
		text = fmt.Sprintf(":alarm_clock: Wave *%s* (%s): the approval request %s", esc(waveName), sites, esc(a.Summary()))
	}
	if len(a.Unresolved) > 0 {
		text += "\n:warning: " + esc(strings.Join(a.Unresolved, "; "))
	}
	blocks := []slack.Block{slack.NewSectionBlock(mrkdwn(text), nil, nil)}
	if a.Outcome == "" {
		value := buttonValue(st.Rollout, waveName)
		approve := slack.NewButtonBlockElement(ActionApprove, value, plain("Approve"))
		approve.Style = slack.StylePrimary
		reject := slack.NewButtonBlockElement(ActionReject, value, plain("Reject"))
		reject.Style = slack.StyleDanger
		blocks = append(blocks, slack.NewActionBlock("approval-"+waveName, approve, reject))
	}
	var votes []string
	for _, v := range a.Votes {
		line := fmt.Sprintf("%s <@%s>", map[bool]string{true: ":white_check_mark: approved by", false: ":no_entry: rejected by"}[v.Approve], v.By)
		if v.Via != "" {
			line += " via " + esc(v.Via)
		}
		if v.Comment != "" {
			line += ": " + esc(v.Comment)
		}
		votes = append(votes, line)
	}
	if len(votes) > 0 {
		blocks = append(blocks, slack.NewContextBlock("", mrkdwn(strings.Join(votes, "\n"))))
	}
	return blocks, fallback(text)
}

// approverMentions are the request's approvers as Slack mentions: users, and groups by their
// ID (which notifies their members) when it was resolved.
func approverMentions(a *rollout.ApprovalStatus) []string {
	var who []string
	for _, p := range a.Approvers {
		handle, group := strings.CutPrefix(p, "@")
		switch id := a.GroupIDs[handle]; {
		case group && id != "":
			who = append(who, "<!subteam^"+esc(id)+">")
		case group:
			who = append(who, esc(p))
		default:
			who = append(who, "<@"+p+">")
		}
	}
	return who
}

// reminderText is the reminder of an open approval request (remindBefore): who must still
// approve, and when the request expires.
func reminderText(st rollout.Status, waveName string) string {
	ws := wave(st, waveName)
	a := ws.Approval
	if a == nil || a.Outcome != "" {
		return fmt.Sprintf(":alarm_clock: Wave *%s*: its approval request is already decided", esc(waveName))
	}
	return fmt.Sprintf(":alarm_clock: Reminder: wave *%s* (%s) still needs %s from %s; the request expires %s",
		esc(waveName), rollout.Count(len(ws.Sites), "site"), rollout.Count(max(a.Quorum-a.Approvals(), 1), "approval"),
		strings.Join(approverMentions(a), ", "), slackTime(a.ExpiresAt))
}

// approvalLine is where an approval request stands, with approvers as mentions and the
// deadline in each reader's own time zone.
func approvalLine(a *rollout.ApprovalStatus) string {
	switch a.Outcome {
	case "":
		return fmt.Sprintf("waiting for approval: %d of %d, until %s", a.Approvals(), a.Quorum, slackTime(a.ExpiresAt))
	case rollout.ApprovalApproved, rollout.ApprovalRejected:
		var by []string
		for _, id := range a.Deciders() {
			by = append(by, "<@"+id+">")
		}
		return a.Outcome + " by " + strings.Join(by, ", ")
	}
	return esc(a.Summary())
}

// slackTime shows t in the reader's time zone; clients that cannot get the UTC fallback.
func slackTime(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format(time.RFC1123))
}

// degradation is why a degraded or reverted site failed: its message, which carries the
// check and the measurement.
func degradation(s rollout.SiteStatus) string {
	if s.Message != "" {
		return s.Message
	}
	for _, c := range s.Checks {
		if !c.OK {
			return c.String()
		}
	}
	return ""
}

func wave(st rollout.Status, name string) rollout.WaveStatus {
	for _, w := range st.Waves {
		if w.Name == name {
			return w
		}
	}
	return rollout.WaveStatus{Name: name}
}

func siteNames(w rollout.WaveStatus) string {
	names := make([]string, len(w.Sites))
	for i, s := range w.Sites {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

func stateIcon(s rollout.State) string {
	switch s {
	case rollout.StateSucceeded:
		return ":white_check_mark:"
	case rollout.StateFailed:
		return ":x:"
	case rollout.StateAborted, rollout.StateRolledBack, rollout.StateSuperseded,
		rollout.StateTerminated, rollout.StateTimedOut, rollout.StateCancelled:
		return ":black_square_for_stop:"
	case rollout.StateRollingBack:
		return ":rewind:"
	case rollout.StatePaused:
		return ":double_vertical_bar:"
	case rollout.StateWaiting, rollout.StateApproval:
		return ":hourglass_flowing_sand:"
	case rollout.StatePending, "":
		return ":white_circle:"
	}
	return ":large_blue_circle:"
}

// words spells a state for a sentence: "AwaitingApproval" as "awaiting approval".
func words(s rollout.State) string {
	var b strings.Builder
	for i, r := range string(s) {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// mrkdwn is verbatim: Slack must not turn a word like @here in a commit subject into a mention
// or a bare URL into a link; the explicit <@U..> and <!date..> we write still render.
func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, true)
}
func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

// esc escapes the three characters Slack's mrkdwn gives meaning to, so commit subjects and
// messages cannot forge links or mentions.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// fallback is the plain text of a message, for notifications and clients without blocks.
func fallback(mrkdwnText string) string {
	first, _, _ := strings.Cut(mrkdwnText, "\n")
	return strings.NewReplacer("*", "", "`", "").Replace(first)
}
