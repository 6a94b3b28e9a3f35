package chatops

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// nowhere answers every response_url post itself, so fuzzed URLs never reach the network.
type nowhere struct{}

func (nowhere) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// fuzzHandler is a handler on rollouts r1 (waiting for approval of wave main), r2 (its
// approval expired) and r3 (approved, one vote in), logging nowhere.
func fuzzHandler() (*Handler, *fakeRollouts) {
	expired := testStatus()
	expired.Rollout = "r2"
	expired.Waves[1].Approval.ExpiresAt = testNow.Add(-time.Second)
	decided := testStatus()
	decided.Rollout = "r3"
	decided.Waves[1].Approval.Outcome = rollout.ApprovalApproved
	decided.Waves[1].Approval.Votes = []rollout.Vote{{By: "UAPP1", Approve: true}}
	f := newFake(testStatus(), expired, decided)
	h := &Handler{
		SigningSecret: testSecret,
		Rollouts:      f,
		Groups:        testGroups,
		Log:           slog.New(slog.DiscardHandler),
		HTTP:          &http.Client{Transport: nowhere{}},
		Now:           func() time.Time { return testNow },
	}
	return h, f
}

// checkRights fails the test for every Do by a user without the right to it, judged
// independently of the handler's own checks.
func checkRights(t *testing.T, f *fakeRollouts) {
	t.Helper()
	_, done := f.recorded()
	for _, a := range done {
		switch a.Verb {
		case VerbApprove, VerbReject:
			st := f.statuses[a.Rollout]
			w := findWave(st, a.Wave)
			if w == nil || w.Approval == nil || !w.Approval.Open(testNow) || !slices.Contains(w.Approval.Eligible, a.User) {
				t.Errorf("Do(%+v) for a user who may not vote", a)
			}
		case VerbPause, VerbResume, VerbAbort, VerbRollback:
			if a.User != "UOPS1" && !slices.Contains(testGroups.members["sre"], a.User) {
				t.Errorf("Do(%+v) for a user who is no operator", a)
			}
		default:
			t.Errorf("Do(%+v): not an action", a)
		}
	}
}

func FuzzInteractionPayload(f *testing.F) {
	const hook = "https://hooks.slack.com/actions/T0001/42/abc"
	for _, p := range []string{
		payloadBody(f, "block_actions", ActionApprove, buttonValue("r1", "main"), "UAPP1", hook),
		payloadBody(f, "block_actions", ActionReject, buttonValue("r1", "main"), "UOPS1", hook),
		payloadBody(f, "block_actions", ActionApprove, buttonValue("r2", "main"), "UAPP1", hook),
		payloadBody(f, "block_actions", ActionApprove, buttonValue("r3", "canary"), "ULEAD1", hook),
		payloadBody(f, "block_actions", ActionApprove, "r1", "UAPP1", hook),
		payloadBody(f, "view_submission", ActionApprove, buttonValue("r1", "main"), "UAPP1", hook),
		payloadBody(f, "block_actions", "other", buttonValue("r1", "main"), "UAPP1", "http://[::1]:0/x"),
	} {
		form, _ := url.ParseQuery(p)
		f.Add(form.Get("payload"))
	}
	for _, p := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"type":"block_actions"}`,
		`{"type":"block_actions","actions":[{"action_id":"fleetwave-approve","value":"r1\nmain"}]}`,
		`{"type":"block_actions","actions":[{"block_id":1}]}`,
		`{"type":"block_actions","actions":[{"block_id":"b","action_id":"fleetwave-reject","value":"\n"}],"user":{"id":"U"},"response_url":"https://x"}`,
		`{"type":"block_actions","state":{"values":{"a":{"b":{"type":"x"}}}},"actions":[]}`,
		`{"type":"dialog_submission","state":"x"}`,
		`{"type":"block_actions","message":{"blocks":[{"type":"section"}]}}`,
		`{"type":"view_submission","view":{"blocks":[{"type":"actions","elements":[{"type":"button"}]}]}}`,
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		h, fake := fuzzHandler()
		r := sign(t, testSecret, time.Now(), url.Values{"payload": {payload}}.Encode())
		r.URL.Path = "/slack/interactions"
		w := httptest.NewRecorder()
		h.Interactions(w, r)
		h.wait()
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Errorf("status %d for payload %q, want 200 or 400", w.Code, payload)
		}
		checkRights(t, fake)
	})
}

func FuzzCommandText(f *testing.F) {
	for _, s := range []struct{ user, text string }{
		{"UAPP1", "approve r1"},
		{"UAPP1", "approve r1 main lgtm"},
		{"ULEAD1", "reject r1 canary"},
		{"UANY", "approve r1 main"},
		{"UOPS1", "approve r1"},
		{"UAPP1", "approve r2 main"},
		{"ULEAD1", "approve r3"},
		{"UOPS1", "pause r1 looking"},
		{"USRE1", "rollback r1"},
		{"UAPP1", "abort r1"},
		{"UANY", "resume r2"},
		{"UANY", "status"},
		{"UANY", "status r1"},
		{"UANY", "help"},
		{"", "approve r1"},
		{"UAPP1", "approve\tr1\nmain"},
		{"UAPP1", "APPROVE r1 MAIN"},
		{"UAPP1", "approve  r1\u00a0main"},
		{"@sre", "pause r1"},
		{"sre", "pause r1"},
	} {
		f.Add(s.user, s.text)
	}
	f.Fuzz(func(t *testing.T, user, text string) {
		h, fake := fuzzHandler()
		w := httptest.NewRecorder()
		h.Commands(w, sign(t, testSecret, time.Now(), commandBody(user, text)))
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Errorf("status %d for %q by %q, want 200 or 400", w.Code, text, user)
		}
		checkRights(t, fake)
	})
}
