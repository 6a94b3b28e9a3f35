package chatops

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetwave/fleetwave/rollout"
)

const testSecret = "8f14e45fceea167a5a36dedd4bea2543"

// testNow is the handler's clock for approval checks; signatures use the real clock.
var testNow = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// testStatus is rollout r1 waiting for the approval of its second wave. UAPP1 and ULEAD1 may
// vote; UOPS1 and the members of @sre may control it.
func testStatus() rollout.Status {
	return rollout.Status{
		Rollout:   "r1",
		Fleet:     "prod",
		Commit:    "0123456789abcdef0123456789abcdef01234567",
		State:     rollout.StateApproval,
		Wave:      "main",
		Operators: []string{"@sre", "UOPS1"},
		Waves: []rollout.WaveStatus{
			{Name: "canary", Index: 0, State: rollout.StateSucceeded},
			{Name: "main", Index: 1, State: rollout.StateApproval, Approval: &rollout.ApprovalStatus{
				Approvers:   []string{"@leads", "UAPP1"},
				Eligible:    []string{"UAPP1", "ULEAD1"},
				Quorum:      1,
				RequestedAt: testNow.Add(-time.Hour),
				ExpiresAt:   testNow.Add(time.Hour),
			}},
		},
	}
}

// fakeRollouts records what the handler asks; Do answers "<verb> accepted".
type fakeRollouts struct {
	mu       sync.Mutex
	statuses map[string]rollout.Status
	active   []Active
	doErr    error
	// block makes Do, and blockStatus Status, wait for the context to end, like a Temporal
	// that does not answer.
	block, blockStatus bool
	calls              []string
	done               []Action
}

func newFake(sts ...rollout.Status) *fakeRollouts {
	f := &fakeRollouts{statuses: map[string]rollout.Status{}}
	for _, st := range sts {
		f.statuses[st.Rollout] = st
	}
	return f
}

func (f *fakeRollouts) Status(ctx context.Context, id string) (rollout.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "status "+id)
	if f.blockStatus {
		f.mu.Unlock()
		<-ctx.Done()
		f.mu.Lock()
		return rollout.Status{}, ctx.Err()
	}
	st, ok := f.statuses[id]
	if !ok {
		return rollout.Status{}, fmt.Errorf("no rollout %s", id)
	}
	return st, nil
}

func (f *fakeRollouts) Active(ctx context.Context) ([]Active, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "active")
	return f.active, nil
}

func (f *fakeRollouts) Do(ctx context.Context, a Action) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, "do "+a.Verb)
	f.done = append(f.done, a)
	block, err := f.block, f.doErr
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return "", ctx.Err()
	}
	if err != nil {
		return "", err
	}
	return a.Verb + " accepted", nil
}

func (f *fakeRollouts) recorded() (calls []string, done []Action) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), append([]Action(nil), f.done...)
}

type fakeGroups struct {
	members map[string][]string
	err     error
}

func (g fakeGroups) Members(ctx context.Context, handle string) ([]string, error) {
	if g.err != nil {
		return nil, g.err
	}
	m, ok := g.members[handle]
	if !ok {
		return nil, fmt.Errorf("no Slack user group @%s", handle)
	}
	return m, nil
}

var testGroups = fakeGroups{members: map[string][]string{"sre": {"USRE1", "USRE2"}}}

// newHandler returns a handler on f whose log goes to the returned buffer.
func newHandler(f Rollouts, g Groups) (*Handler, *syncBuffer) {
	buf := &syncBuffer{}
	return &Handler{
		SigningSecret: testSecret,
		Rollouts:      f,
		Groups:        g,
		Log:           slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:           func() time.Time { return testNow },
		// The tests' response_url sinks run on 127.0.0.1.
		ResponseHosts: append([]string{"http://127.0.0.1"}, SlackResponseHosts...),
	}, buf
}

// syncBuffer is a log buffer that button-press goroutines may write while a test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// sign builds a POST signed the way Slack signs: v0=hex(HMAC-SHA256(secret,
// "v0:<timestamp>:<body>")), with the timestamp in X-Slack-Request-Timestamp.
func sign(t testing.TB, secret string, ts time.Time, body string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/slack/commands", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	stamp := strconv.FormatInt(ts.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + stamp + ":" + body))
	r.Header.Set("X-Slack-Request-Timestamp", stamp)
	r.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return r
}

func commandBody(user, text string) string {
	return url.Values{
		"command":      {"/fleetwave"},
		"team_id":      {"T0001"},
		"channel_id":   {"C0001"},
		"user_id":      {user},
		"text":         {text},
		"response_url": {"https://hooks.slack.com/commands/T0001/1/xyz"},
	}.Encode()
}

// runCommand sends a signed slash command and decodes the answer.
func runCommand(t *testing.T, h *Handler, user, text string) commandReply {
	t.Helper()
	w := httptest.NewRecorder()
	h.Commands(w, sign(t, testSecret, time.Now(), commandBody(user, text)))
	if w.Code != http.StatusOK {
		t.Fatalf("%q by %s: status %d (%s), want 200", text, user, w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var got commandReply
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode %q: %v", w.Body, err)
	}
	if got.ResponseType != "ephemeral" {
		t.Errorf("response_type = %q, want ephemeral", got.ResponseType)
	}
	return got
}

func TestCommandVerbs(t *testing.T) {
	tests := []struct {
		name, user, text string
		want             Action
	}{
		{"approve the waiting wave", "UAPP1", "approve r1",
			Action{Verb: VerbApprove, Rollout: "r1", Wave: "main", User: "UAPP1"}},
		{"approve a named wave with a comment", "UAPP1", "approve r1 main  looks  good ",
			Action{Verb: VerbApprove, Rollout: "r1", Wave: "main", User: "UAPP1", Comment: "looks  good"}},
		{"approve with a comment only", "UAPP1", "approve r1 dashboards are green",
			Action{Verb: VerbApprove, Rollout: "r1", Wave: "main", User: "UAPP1", Comment: "dashboards are green"}},
		{"verb in capitals", "UAPP1", "  APPROVE   r1",
			Action{Verb: VerbApprove, Rollout: "r1", Wave: "main", User: "UAPP1"}},
		{"reject by a member of an approver group", "ULEAD1", "reject r1 main too risky today",
			Action{Verb: VerbReject, Rollout: "r1", Wave: "main", User: "ULEAD1", Comment: "too risky today"}},
		{"pause by a listed operator", "UOPS1", "pause r1 investigating alerts",
			Action{Verb: VerbPause, Rollout: "r1", User: "UOPS1", Comment: "investigating alerts"}},
		{"resume by a member of an operator group", "USRE1", "resume r1",
			Action{Verb: VerbResume, Rollout: "r1", User: "USRE1"}},
		{"abort", "UOPS1", "abort r1 wrong commit",
			Action{Verb: VerbAbort, Rollout: "r1", User: "UOPS1", Comment: "wrong commit"}},
		{"rollback by a member of an operator group", "USRE2", "rollback r1 error rate up",
			Action{Verb: VerbRollback, Rollout: "r1", User: "USRE2", Comment: "error rate up"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(testStatus())
			h, logs := newHandler(f, testGroups)
			got := runCommand(t, h, tt.user, tt.text)
			if diff := cmp.Diff(tt.want.Verb+" accepted", got.Text); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			_, done := f.recorded()
			if diff := cmp.Diff([]Action{tt.want}, done); diff != "" {
				t.Errorf("Do (-want +got):\n%s", diff)
			}
			if !strings.Contains(logs.String(), `msg="slack action" rollout=r1`) {
				t.Errorf("no audit log line:\n%s", logs)
			}
		})
	}
}

func TestCommandRefused(t *testing.T) {
	expired := testStatus()
	expired.Waves[1].Approval.ExpiresAt = testNow.Add(-time.Minute)
	decided := testStatus()
	decided.Waves[1].Approval.Outcome = rollout.ApprovalApproved
	decided.Waves[1].Approval.Votes = []rollout.Vote{{By: "UAPP1", Approve: true, At: testNow}}
	voted := testStatus()
	voted.Waves[1].Approval.Quorum = 2
	voted.Waves[1].Approval.Votes = []rollout.Vote{{By: "UAPP1", Approve: true, At: testNow}}
	noOperators := testStatus()
	noOperators.Operators = nil

	tests := []struct {
		name, user, text string
		st               rollout.Status
		groups           Groups
		want             string
		wantLog          string
	}{
		{name: "approve by a non-approver", user: "UANY", text: "approve r1", st: testStatus(), groups: testGroups,
			want:    "You cannot approve r1: UANY is not an approver of wave main (approvers: @leads, UAPP1).",
			wantLog: `level=WARN msg="slack action refused" rollout=r1 wave=main user=UANY action=approve`},
		{name: "reject by an operator who is no approver", user: "UOPS1", text: "reject r1 main", st: testStatus(), groups: testGroups,
			want:    "You cannot reject r1: UOPS1 is not an approver of wave main (approvers: @leads, UAPP1).",
			wantLog: `msg="slack action refused" rollout=r1 wave=main user=UOPS1 action=reject`},
		{name: "approval expired", user: "UAPP1", text: "approve r1 main", st: expired, groups: testGroups,
			want:    "You cannot approve r1: the approval request of wave main expired at 2026-03-02T09:59:00Z.",
			wantLog: `msg="slack action refused" rollout=r1 wave=main user=UAPP1 action=approve`},
		{name: "approval decided", user: "ULEAD1", text: "approve r1 main", st: decided, groups: testGroups,
			want:    "You cannot approve r1: the approval of wave main is already approved.",
			wantLog: `msg="slack action refused"`},
		{name: "no wave waiting", user: "ULEAD1", text: "approve r1", st: decided, groups: testGroups,
			want:    "You cannot approve r1: no wave is waiting for approval.",
			wantLog: `msg="slack action refused" rollout=r1 wave="" user=ULEAD1 action=approve`},
		{name: "wave without approval", user: "UAPP1", text: "approve r1 canary", st: testStatus(), groups: testGroups,
			want:    "You cannot approve r1: wave canary has no approval request.",
			wantLog: `msg="slack action refused" rollout=r1 wave=canary`},
		{name: "second vote", user: "UAPP1", text: "approve r1", st: voted, groups: testGroups,
			want:    "You cannot approve r1: UAPP1 already voted on wave main (approved by UAPP1).",
			wantLog: `msg="slack action refused"`},
		{name: "pause by a non-operator", user: "UAPP1", text: "pause r1", st: testStatus(), groups: testGroups,
			want:    "You cannot pause r1: UAPP1 is not an operator (operators: @sre, UOPS1).",
			wantLog: `level=WARN msg="slack action refused" rollout=r1 wave="" user=UAPP1 action=pause`},
		{name: "operator group without Groups", user: "USRE1", text: "rollback r1", st: testStatus(), groups: nil,
			want:    "You cannot rollback r1: USRE1 is not an operator (operators: @sre, UOPS1).",
			wantLog: `msg="slack action refused" rollout=r1 wave="" user=USRE1 action=rollback`},
		{name: "operator group lookup fails", user: "USRE1", text: "abort r1", st: testStatus(), groups: fakeGroups{err: errors.New("slack is down")},
			want:    "You cannot abort r1: USRE1 is not an operator (operators: @sre, UOPS1).",
			wantLog: `msg="slack group lookup failed" rollout=r1 user=USRE1 reason="resolve @sre: slack is down"`},
		{name: "user ID spelled like an operator group", user: "@sre", text: "pause r1", st: testStatus(), groups: testGroups,
			want:    "You cannot pause r1: @sre is not an operator (operators: @sre, UOPS1).",
			wantLog: `msg="slack action refused" rollout=r1 wave="" user=@sre action=pause`},
		{name: "no operators", user: "UOPS1", text: "resume r1", st: noOperators, groups: testGroups,
			want:    "You cannot resume r1: the rollout has no operators.",
			wantLog: `msg="slack action refused"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(tt.st)
			h, logs := newHandler(f, tt.groups)
			got := runCommand(t, h, tt.user, tt.text)
			if diff := cmp.Diff(tt.want, got.Text); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if _, done := f.recorded(); len(done) > 0 {
				t.Errorf("Do called with %+v", done)
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log lacks %s:\n%s", tt.wantLog, logs)
			}
		})
	}
}

func TestCommandUsage(t *testing.T) {
	tests := []struct{ name, text, wantFirst string }{
		{"empty", "", "Usage:"},
		{"help", "help", "Usage:"},
		{"unknown verb", "deploy r1", `Unknown command "deploy".`},
		{"approve without rollout", "approve", "approve needs a rollout."},
		{"pause without rollout", "pause  ", "pause needs a rollout."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(testStatus())
			h, _ := newHandler(f, testGroups)
			got := runCommand(t, h, "UOPS1", tt.text)
			first, _, _ := strings.Cut(got.Text, "\n")
			if diff := cmp.Diff(tt.wantFirst, first); diff != "" {
				t.Errorf("first line (-want +got):\n%s", diff)
			}
			if !strings.Contains(got.Text, "`/fleetwave approve &lt;rollout&gt; [wave] [comment]`") {
				t.Errorf("no usage in %q", got.Text)
			}
			if calls, _ := f.recorded(); len(calls) > 0 {
				t.Errorf("Rollouts called: %v", calls)
			}
		})
	}
}

func TestCommandStatus(t *testing.T) {
	tests := []struct {
		name, text string
		active     []Active
		want       string
	}{
		{name: "one rollout, any user", text: "status r1",
			want: "`r1`: AwaitingApproval, fleet prod, commit `0123456`, wave main\n" +
				"• canary: Succeeded\n" +
				"• main: AwaitingApproval: waiting for approval: 0 of 1, until 2026-03-02T11:00:00Z"},
		{name: "lists active rollouts", text: "status", active: []Active{
			{Rollout: "r1", Fleet: "prod", Commit: "0123456789abcdef", Wave: "main", State: "AwaitingApproval"},
			{Rollout: "r2", Fleet: "edge", Commit: "fedcba9876543210", Wave: "canary", State: "Baking"},
		}, want: "Active rollouts:\n• `r1` AwaitingApproval, wave main, commit `0123456`\n• `r2` Baking, wave canary, commit `fedcba9`"},
		{name: "no active rollouts", text: "STATUS", want: "No active rollouts."},
		{name: "unknown rollout", text: "status r9", want: "Cannot read rollout r9: no rollout r9"},
		{name: "mentions are escaped", text: "status <!channel>", want: "Cannot read rollout &lt;!channel&gt;: no rollout &lt;!channel&gt;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(testStatus())
			f.active = tt.active
			h, _ := newHandler(f, nil)
			got := runCommand(t, h, "UANY", tt.text)
			if diff := cmp.Diff(tt.want, got.Text); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if _, done := f.recorded(); len(done) > 0 {
				t.Errorf("Do called with %+v", done)
			}
		})
	}
}

func TestCommandStatusReason(t *testing.T) {
	st := testStatus()
	st.State = rollout.StateFailed
	st.Reason = "site ams-1 degraded"
	st.Waves[1].State = rollout.StateFailed
	st.Waves[1].Approval = nil
	st.Waves[1].Message = "check errors failed"
	h, _ := newHandler(newFake(st), nil)
	got := runCommand(t, h, "UANY", "status r1")
	want := "`r1`: Failed, fleet prod, commit `0123456`, wave main\n" +
		"Reason: site ams-1 degraded\n" +
		"• canary: Succeeded\n" +
		"• main: Failed: check errors failed"
	if diff := cmp.Diff(want, got.Text); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
}

func TestCommandDoError(t *testing.T) {
	f := newFake(testStatus())
	f.doErr = errors.New("wave main is not waiting for approval")
	h, _ := newHandler(f, nil)
	got := runCommand(t, h, "UAPP1", "approve r1")
	if diff := cmp.Diff("approve of r1 failed: wave main is not waiting for approval", got.Text); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
}

func TestCommandTimeout(t *testing.T) {
	tests := []struct {
		name               string
		block, blockStatus bool
		want               string
	}{
		{name: "Do", block: true,
			want: "fleetwave got no answer from Temporal in time. `/fleetwave status r1` shows whether it took effect."},
		{name: "Status", blockStatus: true,
			want: "fleetwave got no answer from Temporal in time about r1; nothing was done. Try again."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(testStatus())
			f.block, f.blockStatus = tt.block, tt.blockStatus
			h, _ := newHandler(f, testGroups)
			h.commandTimeout = 20 * time.Millisecond
			got := runCommand(t, h, "UOPS1", "pause r1")
			if diff := cmp.Diff(tt.want, got.Text); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCommandMalformedForm(t *testing.T) {
	tests := []struct{ name, body string }{
		{"bad escape", "user_id=U1&text=%zz"},
		{"no user", url.Values{"text": {"status"}}.Encode()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(testStatus())
			h, _ := newHandler(f, nil)
			w := httptest.NewRecorder()
			h.Commands(w, sign(t, testSecret, time.Now(), tt.body))
			if w.Code != http.StatusBadRequest {
				t.Errorf("status %d, want 400", w.Code)
			}
			if calls, _ := f.recorded(); len(calls) > 0 {
				t.Errorf("Rollouts called: %v", calls)
			}
		})
	}
}

// payloadBody is the form body of an interaction with the given payload fields.
func payloadBody(t testing.TB, typ, actionID, value, user, responseURL string) string {
	t.Helper()
	p := map[string]any{
		"type":         typ,
		"user":         map[string]any{"id": user, "username": "someone"},
		"team":         map[string]any{"id": "T0001"},
		"channel":      map[string]any{"id": "C0001"},
		"response_url": responseURL,
		"trigger_id":   "1.2.3",
		"actions": []any{map[string]any{
			"action_id": actionID, "block_id": "approval-main", "type": "button",
			"value": value, "action_ts": "1700000000.000100",
		}},
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return url.Values{"payload": {string(b)}}.Encode()
}

// responseSink is a response_url that records what it is sent.
type responseSink struct {
	*httptest.Server
	mu    sync.Mutex
	got   []map[string]any
	ctype []string
	code  int
}

func newSink(t *testing.T) *responseSink {
	s := &responseSink{code: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("response_url got %q: %v", b, err)
		}
		s.mu.Lock()
		s.got = append(s.got, m)
		s.ctype = append(s.ctype, r.Header.Get("Content-Type"))
		code := s.code
		s.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *responseSink) URL() string { return s.Server.URL + "/actions/T0001/42/capability-token" }

func press(t *testing.T, h *Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := sign(t, testSecret, time.Now(), body)
	r.URL.Path = "/slack/interactions"
	w := httptest.NewRecorder()
	h.Interactions(w, r)
	h.wait()
	return w
}

func TestInteractionButtons(t *testing.T) {
	tests := []struct {
		name, actionID, user string
		st                   func() rollout.Status
		wantDo               []Action
		wantText             string
	}{
		{name: "approve by an approver", actionID: ActionApprove, user: "UAPP1", st: testStatus,
			wantDo:   []Action{{Verb: VerbApprove, Rollout: "r1", Wave: "main", User: "UAPP1"}},
			wantText: "approve accepted"},
		{name: "reject by an approver", actionID: ActionReject, user: "ULEAD1", st: testStatus,
			wantDo:   []Action{{Verb: VerbReject, Rollout: "r1", Wave: "main", User: "ULEAD1"}},
			wantText: "reject accepted"},
		{name: "approve by a non-approver", actionID: ActionApprove, user: "UOPS1", st: testStatus,
			wantText: "You cannot approve r1: UOPS1 is not an approver of wave main (approvers: @leads, UAPP1)."},
		{name: "approve after expiry", actionID: ActionApprove, user: "UAPP1",
			st: func() rollout.Status {
				st := testStatus()
				st.Waves[1].Approval.ExpiresAt = testNow
				return st
			},
			wantText: "You cannot approve r1: the approval request of wave main expired at 2026-03-02T10:00:00Z."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := newSink(t)
			f := newFake(tt.st())
			h, _ := newHandler(f, testGroups)
			w := press(t, h, payloadBody(t, "block_actions", tt.actionID, buttonValue("r1", "main"), tt.user, sink.URL()))
			if w.Code != http.StatusOK || w.Body.Len() != 0 {
				t.Errorf("answer %d %q, want 200 and no body", w.Code, w.Body)
			}
			_, done := f.recorded()
			if diff := cmp.Diff(tt.wantDo, done); diff != "" {
				t.Errorf("Do (-want +got):\n%s", diff)
			}
			want := []map[string]any{{"response_type": "ephemeral", "replace_original": false, "text": tt.wantText}}
			if diff := cmp.Diff(want, sink.got); diff != "" {
				t.Errorf("response_url (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"application/json"}, sink.ctype); diff != "" {
				t.Errorf("Content-Type (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInteractionResponseFails(t *testing.T) {
	sink := newSink(t)
	sink.code = http.StatusNotFound
	h, logs := newHandler(newFake(testStatus()), nil)
	press(t, h, payloadBody(t, "block_actions", ActionApprove, buttonValue("r1", "main"), "UAPP1", sink.URL()))
	out := logs.String()
	if !strings.Contains(out, `msg="slack response failed" rollout=r1 wave=main user=UAPP1 action=approve reason="post to response_url: 404 Not Found"`) {
		t.Errorf("no failure logged:\n%s", out)
	}
	if strings.Contains(out, "capability-token") {
		t.Errorf("log holds the response_url:\n%s", out)
	}
}

func TestInteractionMalformed(t *testing.T) {
	const hook = "https://hooks.slack.com/actions/T0001/42/abc"
	value := buttonValue("r1", "main")
	twoActions := func() string {
		p := `{"type":"block_actions","user":{"id":"UAPP1"},"response_url":"` + hook + `","actions":[` +
			`{"action_id":"fleetwave-approve","block_id":"b","value":"r1\nmain"},` +
			`{"action_id":"fleetwave-reject","block_id":"b","value":"r1\nmain"}]}`
		return url.Values{"payload": {p}}.Encode()
	}
	tests := []struct {
		name, body string
		want       int
	}{
		{"no payload", url.Values{"other": {"x"}}.Encode(), http.StatusBadRequest},
		{"payload not JSON", url.Values{"payload": {"{not json"}}.Encode(), http.StatusBadRequest},
		{"payload wrong shape", url.Values{"payload": {`{"type":"block_actions","actions":{}}`}}.Encode(), http.StatusBadRequest},
		{"form not a form", "payload=%zz", http.StatusBadRequest},
		{"button value without wave", payloadBody(t, "block_actions", ActionApprove, "r1", "UAPP1", hook), http.StatusBadRequest},
		{"button value with extra line", payloadBody(t, "block_actions", ActionApprove, "r1\nmain\nx", "UAPP1", hook), http.StatusBadRequest},
		{"no user", payloadBody(t, "block_actions", ActionApprove, value, "", hook), http.StatusBadRequest},
		{"no response_url", payloadBody(t, "block_actions", ActionApprove, value, "UAPP1", ""), http.StatusBadRequest},
		{"response_url not http", payloadBody(t, "block_actions", ActionApprove, value, "UAPP1", "file:///etc/passwd"), http.StatusBadRequest},
		{"response_url elsewhere", payloadBody(t, "block_actions", ActionApprove, value, "UAPP1", "https://attacker.example/hook"), http.StatusBadRequest},
		{"response_url https on 127.0.0.1, where only http is allowed", payloadBody(t, "block_actions", ActionApprove, value, "UAPP1", "https://127.0.0.1:9/hook"), http.StatusBadRequest},
		{"other interaction type", payloadBody(t, "view_submission", ActionApprove, value, "UAPP1", hook), http.StatusOK},
		{"other button", payloadBody(t, "block_actions", "someone-elses-button", value, "UAPP1", hook), http.StatusOK},
		{"two actions", twoActions(), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(testStatus())
			h, _ := newHandler(f, nil)
			w := press(t, h, tt.body)
			if w.Code != tt.want {
				t.Errorf("status %d (%s), want %d", w.Code, w.Body, tt.want)
			}
			if calls, _ := f.recorded(); len(calls) > 0 {
				t.Errorf("Rollouts called: %v", calls)
			}
		})
	}
}

func TestSignVerification(t *testing.T) {
	valid := map[string]string{
		"/slack/commands":     commandBody("UANY", "status r1"),
		"/slack/interactions": "", // filled below: it needs a response_url
	}
	tests := []struct {
		name string
		// secret is the handler's; signWith signs the request.
		secret, signWith string
		age              time.Duration
		edit             func(r *http.Request)
		body             func(valid string) string
		want             int
		wantReason       string
	}{
		{name: "valid", secret: testSecret, signWith: testSecret, want: http.StatusOK},
		{name: "unsigned", secret: testSecret, signWith: testSecret, want: http.StatusUnauthorized, wantReason: `reason="missing headers"`,
			edit: func(r *http.Request) { r.Header.Del("X-Slack-Signature"); r.Header.Del("X-Slack-Request-Timestamp") }},
		{name: "wrong secret", secret: testSecret, signWith: "not-the-secret", want: http.StatusUnauthorized, wantReason: `reason="invalid signature"`},
		{name: "body tampered after signing", secret: testSecret, signWith: testSecret, want: http.StatusUnauthorized, wantReason: `reason="invalid signature"`,
			edit: func(r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(append(b, "&x=1"...)))
			}},
		{name: "replayed after 6 minutes", secret: testSecret, signWith: testSecret, age: 6 * time.Minute,
			want: http.StatusUnauthorized, wantReason: `reason="timestamp is too old"`},
		{name: "6 minutes in the future", secret: testSecret, signWith: testSecret, age: -6 * time.Minute,
			want: http.StatusUnauthorized, wantReason: `reason="timestamp is too old"`},
		{name: "no signing secret configured", secret: "", signWith: "", want: http.StatusUnauthorized, wantReason: `reason="no signing secret configured"`},
		{name: "no signing secret, signed with the real one", secret: "", signWith: testSecret, want: http.StatusUnauthorized, wantReason: `reason="no signing secret configured"`},
		{name: "signature not hex", secret: testSecret, signWith: testSecret, want: http.StatusUnauthorized, wantReason: `reason="malformed signature"`,
			edit: func(r *http.Request) { r.Header.Set("X-Slack-Signature", "v0=zz"+strings.Repeat("0", 62)) }},
		{name: "timestamp not a number", secret: testSecret, signWith: testSecret, want: http.StatusUnauthorized, wantReason: `reason="malformed timestamp"`,
			edit: func(r *http.Request) { r.Header.Set("X-Slack-Request-Timestamp", "yesterday") }},
		{name: "body over 1 MiB", secret: testSecret, signWith: testSecret, want: http.StatusRequestEntityTooLarge, wantReason: `reason="body larger than 1 MiB"`,
			body: func(valid string) string { return valid + "&pad=" + strings.Repeat("a", 1<<20) }},
	}
	for _, path := range []string{"/slack/commands", "/slack/interactions"} {
		for _, tt := range tests {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				sink := newSink(t)
				body := valid[path]
				if body == "" {
					body = payloadBody(t, "block_actions", ActionApprove, buttonValue("r1", "main"), "UAPP1", sink.URL())
				}
				if tt.body != nil {
					body = tt.body(body)
				}
				f := newFake(testStatus())
				h, logs := newHandler(f, nil)
				h.SigningSecret = tt.secret
				r := sign(t, tt.signWith, time.Now().Add(-tt.age), body)
				r.URL.Path = path
				r.RemoteAddr = "192.0.2.7:4711"
				if tt.edit != nil {
					tt.edit(r)
				}
				mux := http.NewServeMux()
				h.Register(mux)
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, r)
				h.wait()
				if w.Code != tt.want {
					t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tt.want)
				}
				calls, _ := f.recorded()
				if tt.want != http.StatusOK {
					if len(calls) > 0 {
						t.Errorf("a refused request reached Rollouts: %v", calls)
					}
					want := `level=WARN msg="slack request refused" path=` + path + ` ` + tt.wantReason + ` remote=192.0.2.7:4711`
					if !strings.Contains(logs.String(), want) {
						t.Errorf("log lacks %s:\n%s", want, logs)
					}
					return
				}
				if len(calls) == 0 {
					t.Error("a valid request did not reach Rollouts")
				}
			})
		}
	}
}

// TestSignLogNeverContainsSecret sends accepted and refused requests and checks that neither
// the signing secret nor a signature shows up in the log.
func TestSignLogNeverContainsSecret(t *testing.T) {
	f := newFake(testStatus())
	h, logs := newHandler(f, fakeGroups{err: errors.New("lookup failed")})
	sink := newSink(t)
	var signatures []string
	send := func(r *http.Request, path string) {
		r.URL.Path = path
		signatures = append(signatures, strings.TrimPrefix(r.Header.Get("X-Slack-Signature"), "v0="))
		w := httptest.NewRecorder()
		if path == "/slack/commands" {
			h.Commands(w, r)
		} else {
			h.Interactions(w, r)
		}
		h.wait()
	}
	for _, text := range []string{"status r1", "approve r1", "pause r1", "rollback r1 why"} {
		body := commandBody("UANY", text)
		send(sign(t, testSecret, time.Now(), body), "/slack/commands")
		send(sign(t, "wrong", time.Now(), body), "/slack/commands")
		send(sign(t, testSecret, time.Now().Add(-time.Hour), body), "/slack/commands")
		tampered := sign(t, testSecret, time.Now(), body)
		tampered.Body = io.NopCloser(strings.NewReader(body + "x"))
		send(tampered, "/slack/commands")
	}
	button := payloadBody(t, "block_actions", ActionApprove, buttonValue("r1", "main"), "UANY", sink.URL())
	send(sign(t, testSecret, time.Now(), button), "/slack/interactions")
	send(sign(t, testSecret+"x", time.Now(), button), "/slack/interactions")

	out := logs.String()
	if !strings.Contains(out, "slack request refused") || !strings.Contains(out, "slack action refused") {
		t.Fatalf("expected refusals in the log:\n%s", out)
	}
	if strings.Contains(out, testSecret) {
		t.Errorf("log holds the signing secret:\n%s", out)
	}
	for _, s := range signatures {
		if strings.Contains(out, s) {
			t.Errorf("log holds signature %s:\n%s", s, out)
		}
	}
}

// TestSignReplayWithinWindow sends the same signed request twice within slack-go's 5 minutes:
// the copy is refused and never reaches Rollouts.
func TestSignReplayWithinWindow(t *testing.T) {
	f := newFake(testStatus())
	h, logs := newHandler(f, nil)
	body := commandBody("UOPS1", "pause r1 replay me")
	first := sign(t, testSecret, time.Now(), body)
	again := sign(t, testSecret, time.Now(), body)
	again.Header = first.Header.Clone()
	// slack-go accepts the hex in upper case too: the same signature, so refused as well.
	upper := sign(t, testSecret, time.Now(), body)
	upper.Header = first.Header.Clone()
	upper.Header.Set("X-Slack-Signature", "v0="+strings.ToUpper(strings.TrimPrefix(first.Header.Get("X-Slack-Signature"), "v0=")))
	for i, r := range []*http.Request{first, again, upper} {
		w := httptest.NewRecorder()
		h.Commands(w, r)
		want := []int{http.StatusOK, http.StatusUnauthorized, http.StatusUnauthorized}[i]
		if w.Code != want {
			t.Fatalf("request %d: status %d, want %d", i+1, w.Code, want)
		}
	}
	if _, done := f.recorded(); len(done) != 1 {
		t.Errorf("%d actions done, want the first only", len(done))
	}
	if n := strings.Count(logs.String(), `reason="replayed request (same signature seen in the last 10 minutes)"`); n != 2 {
		t.Errorf("%d replays logged, want 2:\n%s", n, logs)
	}
}

// TestResponseURLPinnedToSlack: by default a response_url must be Slack's own.
func TestResponseURLPinnedToSlack(t *testing.T) {
	h := &Handler{}
	for u, want := range map[string]bool{
		"https://hooks.slack.com/actions/T1/2/x":     true,
		"https://hooks.slack-gov.com/actions/T1/2/x": true,
		"http://hooks.slack.com/actions/T1/2/x":      false,
		"https://hooks.slack.com.attacker.example/x": false,
		"https://169.254.169.254/latest/meta-data":   false,
		"https://user@hooks.slack.com@evil.example/": false,
	} {
		if got := h.slackResponseURL(u); got != want {
			t.Errorf("%s: allowed %v, want %v", u, got, want)
		}
	}
}

// DeriveKey is HMAC-SHA256 of the purpose keyed with the signing secret (the value here was
// computed with Python's hmac module): servers of different releases must agree on it.
func TestDeriveKey(t *testing.T) {
	if got := hex.EncodeToString(DeriveKey("signing-secret", "fleetwave report link v1")); got != "13915ed185f2c35f7249ea4dcb932b6a21a244993a33b65c9cab8e37acf96191" {
		t.Errorf("DeriveKey = %s", got)
	}
	if DeriveKey("", "fleetwave report link v1") != nil {
		t.Error("a key without a signing secret")
	}
	if hmac.Equal(DeriveKey("signing-secret", "a"), DeriveKey("signing-secret", "b")) {
		t.Error("two purposes share a key")
	}
}
