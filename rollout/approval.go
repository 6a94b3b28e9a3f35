package rollout

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Approval says who must approve a wave before it is promoted.
type Approval struct {
	// Approvers are Slack user IDs ("U012ABC") and user groups ("@sre-leads"); groups are
	// resolved to their members when the approval is requested.
	Approvers []string
	// Quorum is how many distinct approvers must approve.
	Quorum int
	// Timeout bounds the wait for the quorum; then OnTimeout applies.
	Timeout time.Duration
	// OnTimeout is OnTimeoutReject (the rollout fails) or OnTimeoutPause (the rollout pauses;
	// a resume asks again).
	OnTimeout string
	// RemindBefore, when set, posts a reminder in the rollout's Slack thread this long before
	// an open request expires.
	RemindBefore time.Duration `json:",omitempty"`
	// Via, when set, lists where votes may come from (ViaSlack, ViaCLI): a wave may take
	// Slack votes only, whose origin the server proves, and refuse the CLI's.
	Via []string `json:",omitempty"`
}

// Where votes come from.
const (
	ViaSlack = "slack"
	ViaCLI   = "cli"
)

// What happens when an approval times out.
const (
	OnTimeoutReject = "reject"
	OnTimeoutPause  = "pause"
)

// DefaultApprovalTimeout is how long a wave waits for its approvers when the plan says nothing.
const DefaultApprovalTimeout = 24 * time.Hour

// Users returns the approvers that are user IDs; Groups the user group handles (without "@").
func (a Approval) Users() []string {
	var out []string
	for _, s := range a.Approvers {
		if !strings.HasPrefix(s, "@") {
			out = append(out, s)
		}
	}
	return out
}

// Groups returns the user group handles among the approvers, without the "@".
func (a Approval) Groups() []string {
	var out []string
	for _, s := range a.Approvers {
		if h, ok := strings.CutPrefix(s, "@"); ok {
			out = append(out, h)
		}
	}
	return out
}

// Notify says where a rollout reports its progress.
type Notify struct {
	Slack *SlackNotify `json:",omitempty"`
}

// SlackNotify names the channel of a fleet's rollout threads, and who may control its rollouts
// from Slack.
type SlackNotify struct {
	// Channel is a channel name ("#deploys") or ID ("C0123ABC").
	Channel string
	// Operators (user IDs and "@groups") may pause, resume, abort and roll back rollouts from
	// Slack; when empty, every approver of any wave may.
	Operators []string `json:",omitempty"`
}

// userIDRE matches Slack user IDs; groupRE user group handles as the plan writes them.
var (
	userIDRE = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)
	groupRE  = regexp.MustCompile(`^@[a-z0-9][a-z0-9._-]*$`)
)

// ValidApprover reports whether s is a Slack user ID or an "@group" handle.
func ValidApprover(s string) bool { return userIDRE.MatchString(s) || groupRE.MatchString(s) }

// Operators returns who may control the plan's rollouts from Slack: notify.slack.operators,
// or else every approver of every wave, without duplicates.
func (p *Plan) Operators() []string {
	var out []string
	if p.Notify.Slack != nil && len(p.Notify.Slack.Operators) > 0 {
		out = append(out, p.Notify.Slack.Operators...)
	} else {
		for _, w := range p.Waves {
			if w.Approval != nil {
				out = append(out, w.Approval.Approvers...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// HasApprovals reports whether any wave of the plan needs an approval.
func (p *Plan) HasApprovals() bool {
	return slices.ContainsFunc(p.Waves, func(w Wave) bool { return w.Approval != nil })
}

// Outcomes of an approval request.
const (
	ApprovalApproved  = "approved"
	ApprovalRejected  = "rejected"
	ApprovalExpired   = "expired"   // the timeout passed without the quorum
	ApprovalUnmet     = "unmet"     // fewer eligible approvers than the quorum: nobody could approve it
	ApprovalWithdrawn = "withdrawn" // the rollout stopped (abort, rollback, supersede, cancel) while it waited
)

// ApprovalStatus is an approval request of a wave and the votes on it.
type ApprovalStatus struct {
	// Approvers is the plan's list; Eligible the user IDs that may vote, groups resolved
	// when the request was made.
	Approvers []string `json:"approvers,omitempty"`
	Eligible  []string `json:"eligible,omitempty"`
	// Unresolved says which groups could not be resolved, and why; their members cannot vote.
	Unresolved []string `json:"unresolved,omitempty"`
	// GroupIDs maps the resolved groups' handles to their Slack IDs, so messages can mention
	// them.
	GroupIDs    map[string]string `json:"groupIDs,omitempty"`
	Quorum      int               `json:"quorum"`
	RequestedAt time.Time         `json:"requestedAt,omitzero"`
	ExpiresAt   time.Time         `json:"expiresAt,omitzero"`
	Votes       []Vote            `json:"votes,omitempty"`
	// Outcome is "" while the request is open, then one of the Approval* outcomes.
	Outcome string `json:"outcome,omitempty"`
	// Via lists where votes may come from (the plan's approval.via); empty: anywhere.
	Via []string `json:"via,omitempty"`
}

// CheckVia returns why a vote that came via via must be refused, or nil.
func (a *ApprovalStatus) CheckVia(wave, via string) error {
	if len(a.Via) > 0 && !slices.Contains(a.Via, via) {
		return fmt.Errorf("wave %s takes votes via %s only (approval.via), not via %s", wave, strings.Join(a.Via, ", "), cmp.Or(via, "an unnamed origin"))
	}
	return nil
}

// Vote is one approver's accepted decision on a wave.
type Vote struct {
	By      string `json:"by"`
	Approve bool   `json:"approve"`
	// Via is where the vote came from: "slack" or "cli".
	Via     string    `json:"via,omitempty"`
	Comment string    `json:"comment,omitempty"`
	At      time.Time `json:"at,omitzero"`
	// Caller is the Temporal identity that sent the vote (a CLI vote's is the caller's own,
	// whoever --as names), as the workflow's history records it: set by reports and `fleetwave
	// status`, which read the history; the workflow itself does not see who sends an update.
	Caller string `json:"caller,omitempty"`
}

// String describes the vote for status lines and Slack.
func (v Vote) String() string {
	out := "rejected by " + v.By
	if v.Approve {
		out = "approved by " + v.By
	}
	if v.Via != "" {
		out += " via " + v.Via
	}
	if v.Caller != "" {
		out += " (sent by " + v.Caller + ")"
	}
	if v.Comment != "" {
		out += ": " + v.Comment
	}
	return out
}

// Approvals counts the approving votes.
func (a *ApprovalStatus) Approvals() int {
	n := 0
	for _, v := range a.Votes {
		if v.Approve {
			n++
		}
	}
	return n
}

// Open reports whether the request still takes votes at now.
func (a *ApprovalStatus) Open(now time.Time) bool {
	return a.Outcome == "" && now.Before(a.ExpiresAt)
}

// CheckVote returns why a vote by user on wave must be refused at now, or nil: the request is
// decided or expired, the user is not an approver, or has voted already.
func (a *ApprovalStatus) CheckVote(wave, user string, now time.Time) error {
	switch {
	case a.Outcome != "":
		return fmt.Errorf("the approval of wave %s is already %s", wave, a.Outcome)
	case !now.Before(a.ExpiresAt):
		return fmt.Errorf("the approval request of wave %s expired at %s", wave, a.ExpiresAt.UTC().Format(time.RFC3339))
	case user == "":
		return fmt.Errorf("a vote on wave %s must say who votes", wave)
	case !slices.Contains(a.Eligible, user):
		return fmt.Errorf("%s is not an approver of wave %s (approvers: %s)", user, wave, strings.Join(a.Approvers, ", "))
	}
	for _, v := range a.Votes {
		if v.By == user {
			return fmt.Errorf("%s already voted on wave %s (%s)", user, wave, v)
		}
	}
	return nil
}

// Add records an accepted vote and decides the request: one rejection rejects it, Quorum
// approvals approve it.
func (a *ApprovalStatus) Add(v Vote) {
	a.Votes = append(a.Votes, v)
	switch {
	case !v.Approve:
		a.Outcome = ApprovalRejected
	case a.Approvals() >= a.Quorum:
		a.Outcome = ApprovalApproved
	}
}

// Deciders returns who decided an approved or rejected request: the approvers of an approved
// one, the rejecter of a rejected one; nil while it is open or when it ended otherwise.
func (a *ApprovalStatus) Deciders() []string {
	if a.Outcome != ApprovalApproved && a.Outcome != ApprovalRejected {
		return nil
	}
	var by []string
	for _, v := range a.Votes {
		if v.Approve == (a.Outcome == ApprovalApproved) {
			by = append(by, v.By)
		}
	}
	return by
}

// Summary says where the request stands, in one line.
func (a *ApprovalStatus) Summary() string {
	switch a.Outcome {
	case ApprovalApproved, ApprovalRejected:
		return fmt.Sprintf("%s by %s", a.Outcome, strings.Join(a.Deciders(), ", "))
	case ApprovalExpired:
		return fmt.Sprintf("expired at %s with %d of %d approvals", a.ExpiresAt.UTC().Format(time.RFC3339), a.Approvals(), a.Quorum)
	case ApprovalUnmet:
		return fmt.Sprintf("cannot be approved: %d eligible approvers for a quorum of %d", len(a.Eligible), a.Quorum)
	case ApprovalWithdrawn:
		return "withdrawn: the rollout stopped"
	}
	return fmt.Sprintf("waiting for approval: %d of %d, until %s", a.Approvals(), a.Quorum, a.ExpiresAt.UTC().Format(time.RFC3339))
}

// PolicyApprovals lists the approving votes given so far in a rollout, for the policies.
func PolicyApprovals(waves []WaveStatus) []PolicyApproval {
	out := []PolicyApproval{}
	for _, w := range waves {
		if w.Approval == nil {
			continue
		}
		for _, v := range w.Approval.Votes {
			if v.Approve {
				out = append(out, PolicyApproval{Wave: w.Name, By: v.By, Via: v.Via, At: v.At})
			}
		}
	}
	return out
}
