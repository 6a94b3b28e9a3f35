package chatops

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/slack-go/slack/slacktest"

	"github.com/fleetwave/fleetwave/rollout"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// slackCall is one Web API call as the test Slack server saw it.
type slackCall struct {
	Method, Channel, TS, ThreadTS, Text string
	Blocks                              json.RawMessage
	Token                               string
}

// recordingSlack is slack-go's slacktest server with chat.postMessage, chat.update and
// usergroups.list recorded (slacktest answers the first but keeps no blocks, and lacks the
// others).
type recordingSlack struct {
	*slacktest.Server
	mu    sync.Mutex
	calls []slackCall
	down  bool
	n     int
}

func newRecordingSlack(t *testing.T) *recordingSlack {
	rs := &recordingSlack{}
	record := func(method string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			rs.mu.Lock()
			defer rs.mu.Unlock()
			if rs.down {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			c := slackCall{Method: method, Channel: r.Form.Get("channel"), TS: r.Form.Get("ts"), ThreadTS: r.Form.Get("thread_ts"),
				Text: r.Form.Get("text"), Token: r.Form.Get("token") + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}
			if b := r.Form.Get("blocks"); b != "" {
				c.Blocks = json.RawMessage(b)
			}
			rs.calls = append(rs.calls, c)
			rs.n++
			w.Header().Set("Content-Type", "application/json")
			switch method {
			case "usergroups.list":
				_, _ = w.Write([]byte(`{"ok":true,"usergroups":[{"id":"S0LEADS","handle":"sre-leads","users":["U0A","U0B"]},{"id":"S0OPS","handle":"ops","users":["U0C"]}]}`))
			default:
				ts := c.TS
				if ts == "" {
					ts = fmt.Sprintf("1700000000.%06d", rs.n)
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C0DEPLOYS", "ts": ts})
			}
		}
	}
	rs.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", record("chat.postMessage"))
		c.Handle("/chat.update", record("chat.update"))
		c.Handle("/usergroups.list", record("usergroups.list"))
	})
	rs.Start()
	t.Cleanup(rs.Stop)
	return rs
}

func (rs *recordingSlack) take() []slackCall {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := rs.calls
	rs.calls = nil
	return out
}

const testToken = "xoxb-test-token-never-logged"

func threadStatus() rollout.Status {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	return rollout.Status{
		Rollout: "rollout/demo/1a2b3c4", Fleet: "demo", Commit: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d",
		Subject: "bump app to <v2> & more", State: rollout.StateApproval, Wave: "eu", StartedAt: t0,
		Waves: []rollout.WaveStatus{
			{Name: "canary", State: rollout.StateSucceeded, Sites: []rollout.SiteStatus{{Name: "ams-1", Verdict: rollout.VerdictHealthy}}},
			{Name: "eu", Index: 1, State: rollout.StateApproval, Sites: []rollout.SiteStatus{{Name: "ams-2"}, {Name: "fra-1"}},
				Approval: &rollout.ApprovalStatus{Approvers: []string{"U0A", "@sre-leads", "@ops"}, Eligible: []string{"U0A", "U0B"}, Quorum: 2,
					GroupIDs: map[string]string{"sre-leads": "S0LEADS"}, Unresolved: []string{"@ops: no such Slack user group"},
					RequestedAt: t0.Add(10 * time.Minute), ExpiresAt: t0.Add(4*time.Hour + 10*time.Minute),
					Votes: []rollout.Vote{{By: "U0A", Approve: true, Via: "cli", Comment: "ship it", At: t0.Add(12 * time.Minute)}}}},
			{Name: "fleet", Index: 2, State: rollout.StatePending, Sites: []rollout.SiteStatus{{Name: "nyc-1"}}},
		},
	}
}

// golden compares got (JSON) with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got json.RawMessage) {
	t.Helper()
	var v any
	if err := json.Unmarshal(got, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	pretty := strings.TrimSuffix(buf.String(), "\n")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(pretty+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./chatops -update)", err)
	}
	if diff := cmp.Diff(string(want), pretty+"\n"); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestNotifierThread(t *testing.T) {
	rs := newRecordingSlack(t)
	n := &Notifier{API: NewAPI(testToken, rs.GetAPIURL()), Links: Links{UI: "http://127.0.0.1:8233"}}
	ctx := context.Background()
	st := threadStatus()

	// The first event opens the thread with the header only.
	sent, err := n.Send(ctx, Message{Channel: "#deploys", Event: rollout.Event{Kind: rollout.EventStarted}, Status: st})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Sent{Channel: "C0DEPLOYS", Thread: "1700000000.000001", TS: "1700000000.000001"}); sent != want {
		t.Errorf("sent %+v, want %+v", sent, want)
	}
	calls := rs.take()
	if len(calls) != 1 || calls[0].Method != "chat.postMessage" || calls[0].Channel != "#deploys" || calls[0].ThreadTS != "" {
		t.Fatalf("header calls %+v", calls)
	}
	if calls[0].Token != testToken {
		t.Errorf("token sent %q", calls[0].Token)
	}
	if want := "Rollout of 1a2b3c4 to fleet demo: AwaitingApproval"; calls[0].Text != want {
		t.Errorf("fallback text %q, want %q", calls[0].Text, want)
	}
	golden(t, "header.json", calls[0].Blocks)

	// An approval request: a reply in the thread with the buttons, then the header updated.
	req, err := n.Send(ctx, Message{Channel: sent.Channel, Thread: sent.Thread, Event: rollout.Event{Kind: rollout.EventApprovalRequested, Wave: "eu"}, Status: st})
	if err != nil {
		t.Fatal(err)
	}
	calls = rs.take()
	if len(calls) != 2 || calls[0].Method != "chat.postMessage" || calls[0].ThreadTS != sent.Thread || calls[0].Channel != "C0DEPLOYS" ||
		calls[1].Method != "chat.update" || calls[1].TS != sent.Thread {
		t.Fatalf("approval request calls %+v", calls)
	}
	golden(t, "approval-open.json", calls[0].Blocks)

	// The decision rewrites the request: the buttons give way to who decided.
	st.Waves[1].Approval.Add(rollout.Vote{By: "U0B", Approve: true, Via: "slack", At: st.StartedAt.Add(20 * time.Minute)})
	st.Waves[1].State = rollout.StatePending
	st.State = rollout.StatePromoting
	if _, err := n.Send(ctx, Message{Channel: sent.Channel, Thread: sent.Thread, Update: req.TS, Event: rollout.Event{Kind: rollout.EventApprovalDecided, Wave: "eu"}, Status: st}); err != nil {
		t.Fatal(err)
	}
	calls = rs.take()
	if len(calls) != 2 || calls[0].Method != "chat.update" || calls[0].TS != req.TS || calls[1].TS != sent.Thread {
		t.Fatalf("decision calls %+v", calls)
	}
	golden(t, "approval-decided.json", calls[0].Blocks)
	if strings.Contains(string(calls[0].Blocks), ActionApprove) {
		t.Error("the decided request still has buttons")
	}

	// A revert alert names the site, the check and the measurement.
	st.Waves[1].State, st.Waves[1].Message = rollout.StateFailed, "site ams-2 degraded: check error-rate failed (value 0.25, want <= 0.01), 3 times in a row"
	st.Waves[1].Sites[0] = rollout.SiteStatus{Name: "ams-2", Verdict: rollout.VerdictReverted, Revert: "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432",
		Message: "check error-rate failed (value 0.25, want <= 0.01), 3 times in a row"}
	st.State, st.Reason = rollout.StateFailed, "wave eu: site ams-2 degraded"
	if _, err := n.Send(ctx, Message{Channel: sent.Channel, Thread: sent.Thread, Event: rollout.Event{Kind: rollout.EventReverted, Wave: "eu"}, Status: st}); err != nil {
		t.Fatal(err)
	}
	calls = rs.take()
	golden(t, "reverted.json", calls[0].Blocks)
	golden(t, "header-failed.json", calls[1].Blocks)
}

func TestNotifierSlackDown(t *testing.T) {
	rs := newRecordingSlack(t)
	rs.down = true
	n := &Notifier{API: NewAPI(testToken, rs.GetAPIURL())}
	_, err := n.Send(context.Background(), Message{Channel: "#deploys", Event: rollout.Event{Kind: rollout.EventStarted}, Status: threadStatus()})
	if err == nil || strings.Contains(err.Error(), testToken) {
		t.Fatalf("error %v: want an error without the token", err)
	}
	if _, err := (&Notifier{}).Send(context.Background(), Message{}); !errors.Is(err, ErrNoSlack) {
		t.Errorf("no API: %v, want ErrNoSlack", err)
	}
}

func TestDirectoryMembers(t *testing.T) {
	rs := newRecordingSlack(t)
	d := Directory{API: NewAPI(testToken, rs.GetAPIURL())}
	got, err := d.Members(context.Background(), "sre-leads")
	if err != nil || !cmp.Equal(got, []string{"U0A", "U0B"}) {
		t.Errorf("Members(sre-leads) = %v, %v", got, err)
	}
	if _, err := d.Members(context.Background(), "nobody"); !errors.Is(err, ErrNoGroup) || err.Error() != "@nobody: no such Slack user group" {
		t.Errorf("unknown group: %v", err)
	}
	if _, err := (Directory{}).Members(context.Background(), "ops"); !errors.Is(err, ErrNoSlack) {
		t.Errorf("no API: %v", err)
	}
}

func TestApprovalBlocksPerOutcome(t *testing.T) {
	for outcome, want := range map[string]string{
		rollout.ApprovalWithdrawn: ":heavy_minus_sign: Wave *eu* (2 sites): approval request withdrawn, the rollout stopped",
		rollout.ApprovalExpired:   ":alarm_clock: Wave *eu* (2 sites): the approval request expired at 2026-11-27T13:10:00Z with 1 of 2 approvals",
		rollout.ApprovalUnmet:     ":alarm_clock: Wave *eu* (2 sites): the approval request cannot be approved: 2 eligible approvers for a quorum of 2",
		rollout.ApprovalRejected:  ":no_entry: Wave *eu* (2 sites) rejected",
	} {
		st := threadStatus()
		st.Waves[1].Approval.Outcome = outcome
		blocks, fallbackText := ApprovalBlocks(st, "eu")
		raw, _ := json.Marshal(blocks)
		if !strings.Contains(string(raw), strconv.Quote(want)[1:len(strconv.Quote(want))-1]) || strings.Contains(string(raw), ActionApprove) {
			t.Errorf("%s: blocks %s, want %q and no buttons", outcome, raw, want)
		}
		if fallbackText == "" {
			t.Errorf("%s: no fallback text", outcome)
		}
	}
}

func TestReminderAndReportLink(t *testing.T) {
	st := threadStatus()
	st.Waves[1].Approval.Outcome = ""
	blocks, _ := EventBlocks(rollout.Event{Kind: rollout.EventApprovalReminder, Wave: "eu"}, st, Links{})
	raw, _ := json.Marshal(blocks)
	if !strings.Contains(string(raw), "Reminder: wave *eu* (2 sites) still needs") || !strings.Contains(string(raw), "the request expires \\u003c!date^") {
		t.Errorf("reminder: %s", raw)
	}
	st.Waves[1].Approval.Outcome = rollout.ApprovalApproved
	blocks, _ = EventBlocks(rollout.Event{Kind: rollout.EventApprovalReminder, Wave: "eu"}, st, Links{})
	if raw, _ := json.Marshal(blocks); !strings.Contains(string(raw), "already decided") {
		t.Errorf("reminder of a decided request: %s", raw)
	}
	l := Links{UI: "http://ui", Report: func(id string) string { return "https://fw.example/reports/" + id + ".md?exp=1&sig=x" }}
	blocks, _ = EventBlocks(rollout.Event{Kind: rollout.EventFinished}, st, l)
	raw, _ = json.Marshal(blocks)
	if !strings.Contains(string(raw), "|Temporal UI\\u003e, \\u003chttps://fw.example/reports/"+st.Rollout+".md?exp=1\\u0026amp;sig=x|report\\u003e)") {
		t.Errorf("finished: %s", raw)
	}
}
