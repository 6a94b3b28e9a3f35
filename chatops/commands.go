package chatops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/slack-go/slack"

	"github.com/fleetwave/fleetwave/rollout"
)

// commandTimeout leaves Slack's 3 s budget for a slash command's answer some slack for
// the network; past it the user is told to check the status instead.
const commandTimeout = 2500 * time.Millisecond

// Commands answers the `/fleetwave` slash command. The answer is synchronous and ephemeral:
// Slack shows it only to the user who typed the command.
func (h *Handler) Commands(w http.ResponseWriter, r *http.Request) {
	form, ok := h.verifiedForm(w, r)
	if !ok {
		return
	}
	user := form.Get("user_id")
	if user == "" {
		h.badRequest(w, "missing user_id")
		return
	}
	name := form.Get("command")
	if name == "" {
		name = "/fleetwave"
	}
	timeout := h.commandTimeout
	if timeout <= 0 {
		timeout = commandTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	text := h.command(ctx, name, user, form.Get("text"))

	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(commandReply{ResponseType: slack.ResponseTypeEphemeral, Text: esc(text)})
}

// commandReply is the synchronous answer to a slash command.
type commandReply struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
}

// command runs one slash command and returns the text to show the user.
func (h *Handler) command(ctx context.Context, name, user, text string) string {
	verb, rest := nextField(text)
	verb = strings.ToLower(verb)
	rolloutID, rest := nextField(rest)
	switch verb {
	case "", "help":
		return commandUsage(name)
	case VerbStatus:
		if rolloutID == "" {
			return h.activeText(ctx)
		}
		st, err := h.Rollouts.Status(ctx, rolloutID)
		if err != nil {
			return h.callFailed(ctx, rolloutID, err)
		}
		return statusText(rolloutID, st)
	case VerbApprove, VerbReject:
		if rolloutID == "" {
			return fmt.Sprintf("%s needs a rollout.\n%s", verb, commandUsage(name))
		}
		st, err := h.Rollouts.Status(ctx, rolloutID)
		if err != nil {
			return h.callFailed(ctx, rolloutID, err)
		}
		// The word after the rollout is the wave only when the rollout has a wave of that
		// name; otherwise it starts the comment ("approve r1 looks good").
		a := Action{Verb: verb, Rollout: rolloutID, User: user, Comment: rest}
		if first, after := nextField(rest); first != "" && findWave(st, first) != nil {
			a.Wave, a.Comment = first, after
		}
		return h.vote(ctx, st, a)
	case VerbPause, VerbResume, VerbAbort, VerbRollback:
		if rolloutID == "" {
			return fmt.Sprintf("%s needs a rollout.\n%s", verb, commandUsage(name))
		}
		st, err := h.Rollouts.Status(ctx, rolloutID)
		if err != nil {
			return h.callFailed(ctx, rolloutID, err)
		}
		return h.control(ctx, st, Action{Verb: verb, Rollout: rolloutID, User: user, Comment: rest})
	}
	return fmt.Sprintf("Unknown command %q.\n%s", verb, commandUsage(name))
}

// commandUsage explains the slash command, under the name the app gave it.
func commandUsage(name string) string {
	return "Usage:\n" +
		"`" + name + " status [rollout]`: the active rollouts, or one rollout's waves\n" +
		"`" + name + " approve <rollout> [wave] [comment]`: vote for the wave waiting for approval\n" +
		"`" + name + " reject <rollout> [wave] [comment]`: vote against it, which rejects it\n" +
		"`" + name + " pause|resume|abort|rollback <rollout> [reason]`: control a rollout (operators only)"
}

// activeText lists the running rollouts, one line each.
func (h *Handler) activeText(ctx context.Context) string {
	active, err := h.Rollouts.Active(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return "fleetwave got no answer from Temporal in time; try again."
		}
		return "Cannot list the active rollouts: " + err.Error()
	}
	if len(active) == 0 {
		return "No active rollouts."
	}
	lines := []string{"Active rollouts:"}
	for _, a := range active {
		line := fmt.Sprintf("• `%s` %s", a.Rollout, a.State)
		if a.Wave != "" {
			line += ", wave " + a.Wave
		}
		if a.Commit != "" {
			line += ", commit `" + rollout.Short(a.Commit) + "`"
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// statusText is a compact status of one rollout: the rollout, each wave, where an approval
// stands and why the rollout ended.
func statusText(id string, st rollout.Status) string {
	head := fmt.Sprintf("`%s`: %s", id, st.State)
	if st.Fleet != "" {
		head += ", fleet " + st.Fleet
	}
	if st.Commit != "" {
		head += ", commit `" + rollout.Short(st.Commit) + "`"
	}
	if st.Wave != "" {
		head += ", wave " + st.Wave
	}
	lines := []string{head}
	if st.Reason != "" {
		lines = append(lines, "Reason: "+st.Reason)
	}
	for _, w := range st.Waves {
		line := fmt.Sprintf("• %s: %s", w.Name, w.State)
		if w.Approval != nil {
			line += ": " + w.Approval.Summary()
		} else if w.Message != "" {
			line += ": " + w.Message
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// vote checks that a.User may vote on the wave (the one waiting for approval when a.Wave is
// "") and sends the vote. Checking here, not only in the workflow's validator, keeps a refused
// vote from costing an Update and gives the user the reason at once.
func (h *Handler) vote(ctx context.Context, st rollout.Status, a Action) string {
	wave, err := h.checkVote(st, a)
	a.Wave = wave
	if err != nil {
		h.refused(a, err)
		return fmt.Sprintf("You cannot %s %s: %v.", a.Verb, a.Rollout, err)
	}
	return h.do(ctx, a)
}

// checkVote returns the wave a vote is for, or why it must be refused: no such wave, no
// open approval request, or a user who is not eligible or has voted already.
func (h *Handler) checkVote(st rollout.Status, a Action) (string, error) {
	wave := a.Wave
	if wave == "" {
		for _, w := range st.Waves {
			if w.State == rollout.StateApproval && w.Approval != nil && w.Approval.Outcome == "" {
				wave = w.Name
				break
			}
		}
		if wave == "" {
			return "", errors.New("no wave is waiting for approval")
		}
	}
	w := findWave(st, wave)
	switch {
	case w == nil:
		return wave, fmt.Errorf("the rollout has no wave %s", wave)
	case w.Approval == nil:
		return wave, fmt.Errorf("wave %s has no approval request", wave)
	}
	if err := w.Approval.CheckVia(wave, rollout.ViaSlack); err != nil {
		return wave, err
	}
	// CheckVote covers Open(now) and Eligible, and also a second vote, with the rollout
	// package's own wording.
	return wave, w.Approval.CheckVote(wave, a.User, h.now())
}

// control checks that a.User is an operator of the rollout and sends the control.
func (h *Handler) control(ctx context.Context, st rollout.Status, a Action) string {
	if !h.isOperator(ctx, st, a.User) {
		err := fmt.Errorf("%s is not an operator (operators: %s)", a.User, strings.Join(st.Operators, ", "))
		if len(st.Operators) == 0 {
			err = errors.New("the rollout has no operators")
		}
		h.refused(a, err)
		return fmt.Sprintf("You cannot %s %s: %v.", a.Verb, a.Rollout, err)
	}
	return h.do(ctx, a)
}

// isOperator reports whether user is one of the rollout's operators, directly or through an
// "@group". A group that cannot be resolved counts as not containing the user: failing
// closed is the only safe answer for a break-glass control.
func (h *Handler) isOperator(ctx context.Context, st rollout.Status, user string) bool {
	if user == "" {
		return false
	}
	// Direct entries first, so a listed operator costs no group lookup. An "@group" entry is
	// never compared with the user ID itself.
	for _, op := range st.Operators {
		if !strings.HasPrefix(op, "@") && op == user {
			return true
		}
	}
	for _, op := range st.Operators {
		handle, ok := strings.CutPrefix(op, "@")
		if !ok || h.Groups == nil {
			continue
		}
		members, err := h.Groups.Members(ctx, handle)
		if err != nil {
			h.log().Warn("slack group lookup failed", "rollout", st.Rollout, "user", user,
				"reason", fmt.Sprintf("resolve @%s: %v", handle, err))
			continue
		}
		if slices.Contains(members, user) {
			return true
		}
	}
	return false
}

// do sends an action the user has the right to and returns the rollout's answer, or why it
// refused (the workflow validator's reason).
func (h *Handler) do(ctx context.Context, a Action) string {
	out, err := h.Rollouts.Do(ctx, a)
	if err != nil {
		h.log().Warn("slack action failed", "rollout", a.Rollout, "wave", a.Wave, "user", a.User, "action", a.Verb, "reason", err.Error())
		h.count(EventActionFailed)
		if ctx.Err() != nil {
			return timeoutText(a.Rollout)
		}
		return fmt.Sprintf("%s of %s failed: %v", a.Verb, a.Rollout, err)
	}
	h.log().Info("slack action", "rollout", a.Rollout, "wave", a.Wave, "user", a.User, "action", a.Verb)
	h.count(EventActionAccepted)
	if out == "" {
		out = fmt.Sprintf("%s of %s accepted.", a.Verb, a.Rollout)
	}
	return out
}

// callFailed is the answer when the rollout's status could not be read. Nothing was sent
// then, so unlike a Do that timed out there is no doubt to report.
func (h *Handler) callFailed(ctx context.Context, id string, err error) string {
	if ctx.Err() != nil {
		return fmt.Sprintf("fleetwave got no answer from Temporal in time about %s; nothing was done. Try again.", id)
	}
	return fmt.Sprintf("Cannot read rollout %s: %v", id, err)
}

// timeoutText tells the user that an action may or may not have happened: Temporal may have
// accepted the Update after we stopped waiting.
func timeoutText(id string) string {
	return fmt.Sprintf("fleetwave got no answer from Temporal in time. `/fleetwave status %s` shows whether it took effect.", id)
}

// refused logs an action refused for lack of rights, for the audit trail.
func (h *Handler) refused(a Action, why error) {
	h.log().Warn("slack action refused", "rollout", a.Rollout, "wave", a.Wave, "user", a.User, "action", a.Verb, "reason", why.Error())
	h.count(EventActionRefused)
}

// findWave returns the named wave of st, or nil.
func findWave(st rollout.Status, name string) *rollout.WaveStatus {
	for i := range st.Waves {
		if st.Waves[i].Name == name {
			return &st.Waves[i]
		}
	}
	return nil
}

// nextField splits off the first whitespace-separated word of s and returns it and the rest,
// trimmed; comments keep their inner spacing.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}
