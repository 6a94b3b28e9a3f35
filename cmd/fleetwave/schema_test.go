package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/internal/schematest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// fullStatus is a status with every field set, so that its JSON has every documented field.
func fullStatus() rollout.Status {
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	check := rollout.CheckResult{Name: "error-rate", OK: false, Unknown: false, Value: 0.02, Threshold: "<= 0.01", Message: "too many errors", At: at}
	site := rollout.SiteStatus{Name: "ams-1", Branch: "sites/ams-1", Verdict: rollout.VerdictReverted, Promotion: strings.Repeat("a", 40),
		Promoted: true, Previous: strings.Repeat("b", 40), Revert: strings.Repeat("c", 40), Failures: 3, UnknownSince: at,
		Checks: []rollout.CheckResult{check, {Name: "smoke", Unknown: true}}, Revision: "sites/ams-1@sha1:" + strings.Repeat("a", 40),
		Message: "reverted", UpdatedAt: at}
	return rollout.Status{Rollout: "rollout/demo/aaaaaaaaaaaa", Fleet: "demo", Commit: strings.Repeat("d", 40), Subject: "bump", State: rollout.StateFailed,
		Simulated: true, Wave: "canary", Reason: "site ams-1 degraded", Cause: rollout.CauseWaveDegraded, StartedAt: at, FinishedAt: at.Add(time.Minute),
		Controls:  []rollout.Control{{Action: "pause", By: "U1", Reason: "look", At: at}},
		Operators: []string{"U1"}, Waiting: []string{"Promote (attempt 2)"},
		CatchUp: &rollout.CatchUpOf{Site: "ams-1", Rollout: "rollout/demo/bbbbbbbbbbbb", Probing: true, OfflineSince: at},
		Waves: []rollout.WaveStatus{{Name: "canary", Index: 0, State: rollout.StateFailed, Sites: []rollout.SiteStatus{site},
			StartedAt: at, ConvergedAt: at, BakeUntil: at, FinishedAt: at, Message: "failed", Unsettled: true,
			Policy: &rollout.PolicyDecision{Outcome: "wait", Deny: []string{"no"}, Reasons: []string{"freeze"}, WaitUntil: at, At: at},
			Approval: &rollout.ApprovalStatus{Approvers: []string{"@sre"}, Eligible: []string{"U1"}, Unresolved: []string{"@x: not found"},
				GroupIDs: map[string]string{"sre": "S1"}, Quorum: 1, RequestedAt: at, ExpiresAt: at,
				Votes: []rollout.Vote{{By: "U1", Approve: true, Via: "slack", Comment: "ok", At: at, Caller: "1234@worker"}}, Outcome: "approved",
				Via: []string{"slack"}}}}}
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := writeJSON(&b, "json", v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestJSONOutputsFollowTheirSchemas checks the JSON the CLI prints, each output filled in
// every field, against docs/schemas/v1alpha1.json, and that the schema documents no field the
// outputs never write.
func TestJSONOutputsFollowTheirSchemas(t *testing.T) {
	var status bytes.Buffer
	if err := printStatus(&status, "json", fullStatus()); err != nil {
		t.Fatal(err)
	}
	yes := true
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	plan, _, err := run(t, "plan", "show", samplePlan, "-o", "json", "--at", "2026-11-27T09:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	version, _, err := run(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string][]byte{
		"RolloutStatus": status.Bytes(),
		"RolloutList": encode(t, rolloutList{TypeMeta: rollout.Meta(rollout.KindRolloutList), Items: []workflows.Summary{{Rollout: "rollout/demo/a",
			Fleet: "demo", Commit: "a", Wave: "canary", State: "Succeeded", Started: at, Closed: at}}}),
		"SiteList": encode(t, siteList{TypeMeta: rollout.Meta(rollout.KindSiteList), Items: []siteReport{{Site: "ams-1", Wave: "canary",
			Branch: "sites/ams-1", Head: "a", Applied: "a", Source: "b", Running: "b", Target: "b", State: "Deferred", Since: at,
			CatchUp: "catchup/demo/ams-1", Runs: &yes, Drift: true, Flux: "Ready", Verdict: rollout.VerdictHealthy,
			Message: "ok", Checks: []rollout.CheckResult{{Name: "smoke", OK: true, Value: 200, Threshold: "status 200", Message: "200 OK", At: at}, {Name: "p", Unknown: true}}}}}),
		"RolloutRef":    encode(t, rolloutRef{TypeMeta: rollout.Meta(kindRolloutRef), Rollout: "rollout/demo/a", Fleet: "demo", Commit: "a"}),
		"ControlResult": encode(t, controlResult{TypeMeta: rollout.Meta(kindControlResult), Rollout: "r", ControlResult: workflows.ControlResult{State: rollout.StatePaused, Message: "paused"}}),
		"VoteResult":    encode(t, voteResult{TypeMeta: rollout.Meta(kindVoteResult), Rollout: "r", VoteResult: workflows.VoteResult{Wave: "eu", Outcome: "approved", Message: "approved"}}),
		"PlanSummary":   []byte(plan),
		"Version":       []byte(version),
	}
	for kind, data := range outputs {
		schematest.Check(t, kind, data)
	}
	// Every field documented for a status and a site list is one the outputs write.
	for _, kind := range []string{"RolloutStatus", "SiteList", "RolloutList", "ControlResult", "VoteResult", "RolloutRef", "Version"} {
		missing, err := schematest.Missing(kind, outputs[kind])
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Errorf("%s: docs/schemas documents fields no output writes: %v", kind, missing)
		}
	}
	// What the issue saw: Go field names and zero times fail the schema.
	for _, bad := range []string{
		`{"apiVersion":"fleetwave.dev/v1alpha1","kind":"RolloutStatus","Rollout":"r","fleet":"f","commit":"c","state":"Pending"}`,
		`{"apiVersion":"fleetwave.dev/v1alpha1","kind":"RolloutStatus","rollout":"r","fleet":"f","commit":"c","state":"Pending","startedAt":"0001-01-01T00:00:00Z"}`,
		`{"apiVersion":"fleetwave.dev/v1alpha1","kind":"RolloutStatus","rollout":"r","fleet":"f","commit":"c","state":"Sleeping"}`,
	} {
		if schematest.Validate("RolloutStatus", []byte(bad)) == nil {
			t.Errorf("the schema accepts %s", bad)
		}
	}
}
