package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestApprovalVotes(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	a := &ApprovalStatus{Approvers: []string{"U1", "@leads"}, Eligible: []string{"U1", "U2", "U3"}, Quorum: 2,
		RequestedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	refuse := func(user string, now time.Time, want string) {
		t.Helper()
		err := a.CheckVote("eu", user, now)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckVote(%s) = %v, want %q", user, err, want)
		}
	}
	refuse("U9", t0, "U9 is not an approver of wave eu (approvers: U1, @leads)")
	refuse("", t0, "must say who votes")
	refuse("U1", t0.Add(time.Hour), "expired at 2026-11-27T10:00:00Z")
	if err := a.CheckVote("eu", "U1", t0); err != nil {
		t.Fatal(err)
	}
	a.Add(Vote{By: "U1", Approve: true, Via: "slack", At: t0})
	if a.Outcome != "" {
		t.Fatalf("one of two approvals decided the request: %q", a.Outcome)
	}
	refuse("U1", t0, "U1 already voted on wave eu (approved by U1 via slack)")
	if got := a.Summary(); got != "waiting for approval: 1 of 2, until 2026-11-27T10:00:00Z" {
		t.Errorf("Summary = %q", got)
	}
	a.Add(Vote{By: "U3", Approve: true, Via: "cli", At: t0})
	if a.Outcome != ApprovalApproved || a.Summary() != "approved by U1, U3" {
		t.Errorf("after quorum: %q %q", a.Outcome, a.Summary())
	}
	refuse("U2", t0, "already approved")

	r := &ApprovalStatus{Eligible: []string{"U1", "U2"}, Quorum: 2, ExpiresAt: t0.Add(time.Hour)}
	r.Add(Vote{By: "U1", Approve: true})
	r.Add(Vote{By: "U2", Comment: "not on a Friday"})
	if r.Outcome != ApprovalRejected || r.Summary() != "rejected by U2" {
		t.Errorf("one rejection: %q %q", r.Outcome, r.Summary())
	}
}

// TestApprovalVia: approval.via takes slack and cli, each once; CheckVia refuses the others.
func TestApprovalVia(t *testing.T) {
	a := &ApprovalStatus{Via: []string{ViaSlack}}
	if err := a.CheckVia("eu", ViaCLI); err == nil || err.Error() != "wave eu takes votes via slack only (approval.via), not via cli" {
		t.Errorf("CheckVia(cli) = %v", err)
	}
	if err := a.CheckVia("eu", ViaSlack); err != nil {
		t.Errorf("CheckVia(slack) = %v", err)
	}
	if err := (&ApprovalStatus{}).CheckVia("eu", ViaCLI); err != nil {
		t.Errorf("no via: %v", err)
	}
	plan := func(via string) []byte {
		return []byte("apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nspec:\n  sites: [{name: a}]\n  waves:\n    - {name: all, approval: {approvers: [U012ABC], via: " + via + "}}\n")
	}
	p, err := ParsePlan("f.yaml", plan("[slack]"))
	if err != nil || !slices.Equal(p.Waves[0].Approval.Via, []string{"slack"}) {
		t.Fatalf("via [slack]: %v, %+v", err, p)
	}
	for via, want := range map[string]string{"[web]": `f.yaml:6:58: wave "all": approval.via "web": use slack or cli`,
		"[cli, cli]": `f.yaml:6:63: wave "all": approval.via lists cli twice`} {
		if _, err := ParsePlan("f.yaml", plan(via)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("via %s: %v, want %q", via, err, want)
		}
	}
}
