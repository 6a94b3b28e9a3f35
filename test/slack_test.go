//go:build e2e

package test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// e2eSlack is slack-go's slacktest server recording the Web API calls fleetwave makes, and
// a response_url endpoint recording the answers to button presses.
type e2eSlack struct {
	api     *slacktest.Server
	replies *httptest.Server
	mu      sync.Mutex
	calls   []url.Values // with "method" set
	answers []map[string]any
}

func newE2ESlack(t *testing.T) *e2eSlack {
	s := &e2eSlack{}
	n := 0
	record := func(method string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			s.mu.Lock()
			defer s.mu.Unlock()
			v := r.Form
			v.Set("method", method)
			s.calls = append(s.calls, v)
			n++
			w.Header().Set("Content-Type", "application/json")
			if method == "usergroups.list" {
				_, _ = io.WriteString(w, `{"ok":true,"usergroups":[{"id":"S0LEADS","handle":"sre-leads","users":["U0LEAD"]}]}`)
				return
			}
			ts := cmpOr(v.Get("ts"), fmt.Sprintf("1700000000.%06d", n))
			v.Set("returned_ts", ts)
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C0DEPLOYS", "ts": ts})
		}
	}
	s.api = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", record("chat.postMessage"))
		c.Handle("/chat.update", record("chat.update"))
		c.Handle("/usergroups.list", record("usergroups.list"))
	})
	s.api.Start()
	t.Cleanup(s.api.Stop)
	s.replies = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		s.mu.Lock()
		s.answers = append(s.answers, m)
		s.mu.Unlock()
	}))
	t.Cleanup(s.replies.Close)
	return s
}

// blocks is the Block Kit JSON of a call, with the HTML escapes of Go's encoder undone.
func blocks(v url.Values) string {
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(v.Get("blocks"))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *e2eSlack) find(pred func(url.Values) bool) []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []url.Values
	for _, c := range s.calls {
		if pred(c) {
			out = append(out, c)
		}
	}
	return out
}

func (s *e2eSlack) answer(i int) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < len(s.answers) {
		return s.answers[i], true
	}
	return nil, false
}

// signedPost sends body to url signed as Slack signs requests: v0 HMAC-SHA256 of
// "v0:timestamp:body" with the signing secret.
func signedPost(t *testing.T, endpoint, secret string, at time.Time, body string) int {
	t.Helper()
	code, _ := signedPostBody(t, endpoint, secret, at, body)
	return code
}

func signedPostBody(t *testing.T, endpoint, secret string, at time.Time, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		ts := strconv.FormatInt(at.Unix(), 10)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte("v0:" + ts + ":" + body))
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// buttonPress is the interaction payload Slack sends when user presses an approval button.
func buttonPress(user, actionID, value, responseURL string) string {
	payload, _ := json.Marshal(map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": user, "username": strings.ToLower(user)},
		"channel":      map[string]any{"id": "C0DEPLOYS"},
		"response_url": responseURL,
		"actions":      []map[string]any{{"action_id": actionID, "block_id": "approval-eu-west", "type": "button", "value": value}},
	})
	return url.Values{"payload": {string(payload)}}.Encode()
}

// TestSlackApprovalOnDev runs `fleetwave dev` against a Slack-compatible test server: the
// eu-west wave waits for approval, the thread shows the request with its buttons, forged,
// replayed and unauthorized presses change nothing, a signed press by a member of the
// approvers' user group approves it, and the wave runs.
func TestSlackApprovalOnDev(t *testing.T) {
	const secret = "e2e-signing-secret"
	slk := newE2ESlack(t)
	t.Setenv("FLEETWAVE_SLACK_TOKEN", "xoxb-e2e")
	t.Setenv("FLEETWAVE_SLACK_SIGNING_SECRET", secret)
	t.Setenv("FLEETWAVE_SLACK_API_URL", slk.api.GetAPIURL())
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range slk.find(func(url.Values) bool { return true }) {
				t.Logf("slack %s channel=%s ts=%s thread=%s blocks=%s", c.Get("method"), c.Get("channel"), c.Get("ts"), c.Get("thread_ts"), blocks(c))
			}
		}
	})
	s := newDevSession(t, "--no-sample-rollout")
	httpURL := s.dev.urls["http"]

	sample, err := os.ReadFile("../cmd/fleetwave/sample/fleetwave.yaml")
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Replace(string(sample), "      # approval: {approvers: [U012ABC], timeout: 1h}\n", "      approval: {approvers: [U0APPROVER, \"@sre-leads\"], timeout: 5m, remindBefore: 4m57s}\n", 1)
	plan = strings.Replace(plan, `channel: "#fleetwave-dev"`, `channel: "#deploys"`, 1)
	if !strings.Contains(plan, "approval: {approvers: [U0APPROVER") || !strings.Contains(plan, "#deploys") {
		t.Fatal("the sample plan changed: update this test")
	}
	c, _ := clonePush(t, s.gitURL, "eu-west needs approval", map[string]string{"fleetwave.yaml": plan})
	id := workflows.RolloutID("demo", c)
	waitFor(t, "eu-west waiting for approval", func() bool {
		st, err := s.fw.Status(context.Background(), id)
		return err == nil && st.State == rollout.StateApproval && st.Wave == "eu-west"
	})

	// The request is in the thread, with both buttons carrying the rollout and the wave.
	var request url.Values
	waitFor(t, "the approval request in Slack", func() bool {
		r := slk.find(func(v url.Values) bool {
			return v.Get("method") == "chat.postMessage" && strings.Contains(blocks(v), `"action_id":"fleetwave-approve"`)
		})
		if len(r) > 0 {
			request = r[0]
		}
		return len(r) > 0
	})
	// remindBefore: 3 seconds after the request, while it is open, a reminder in the thread.
	waitFor(t, "the approval reminder in Slack", func() bool {
		return len(slk.find(func(v url.Values) bool {
			return v.Get("method") == "chat.postMessage" && v.Get("thread_ts") != "" && strings.Contains(blocks(v), "Reminder: wave *eu-west* (2 sites) still needs 1 approval from")
		})) == 1
	})
	headers := slk.find(func(v url.Values) bool { return v.Get("method") == "chat.postMessage" && v.Get("thread_ts") == "" })
	if len(headers) != 1 || headers[0].Get("channel") != "#deploys" || request.Get("thread_ts") == "" || request.Get("channel") != "C0DEPLOYS" {
		t.Fatalf("thread: %d headers %v, request in %s/%s", len(headers), headers, request.Get("channel"), request.Get("thread_ts"))
	}
	value := id + "\neu-west"
	if !strings.Contains(blocks(request), strconv.Quote(value)[1:len(strconv.Quote(value))-1]) || !strings.Contains(blocks(request), "<@U0APPROVER>, <!subteam^S0LEADS>") {
		t.Errorf("request blocks: %s", blocks(request))
	}

	// Unsigned, forged and replayed presses: 401, and nothing reaches the rollout.
	press := buttonPress("U0LEAD", "fleetwave-approve", value, slk.replies.URL)
	for name, code := range map[string]int{
		"unsigned":     signedPost(t, httpURL+"/slack/interactions", "", time.Now(), press),
		"wrong secret": signedPost(t, httpURL+"/slack/interactions", "not-the-secret", time.Now(), press),
		"replayed":     signedPost(t, httpURL+"/slack/interactions", secret, time.Now().Add(-6*time.Minute), press),
	} {
		if code != http.StatusUnauthorized {
			t.Errorf("%s press: HTTP %d, want 401", name, code)
		}
	}
	// A workspace member who is no approver: refused with an ephemeral answer.
	if code := signedPost(t, httpURL+"/slack/interactions", secret, time.Now(), buttonPress("U0STRANGER", "fleetwave-approve", value, slk.replies.URL)); code != http.StatusOK {
		t.Fatalf("stranger's press: HTTP %d", code)
	}
	var refusal map[string]any
	waitFor(t, "the refusal", func() bool { var ok bool; refusal, ok = slk.answer(0); return ok })
	if refusal["response_type"] != "ephemeral" || !strings.Contains(fmt.Sprint(refusal["text"]), "U0STRANGER") {
		t.Errorf("refusal %v", refusal)
	}
	// The CLI goes through the same rule.
	if out, err := fleetwaveCLI(t, s.bin, s.temporal, "approve", id, "--as", "U0STRANGER"); err == nil || !strings.Contains(out, "U0STRANGER is not an approver of wave eu-west") {
		t.Errorf("CLI approve by a stranger: %v\n%s", err, out)
	}
	if st, _ := s.fw.Status(context.Background(), id); st.State != rollout.StateApproval || len(st.Waves[1].Approval.Votes) != 0 {
		t.Fatalf("after the refused votes: %s %+v", st.State, st.Waves[1].Approval)
	}

	// A member of @sre-leads presses Approve: the wave runs and the rollout succeeds.
	pressedAt := time.Now()
	if code := signedPost(t, httpURL+"/slack/interactions", secret, pressedAt, press); code != http.StatusOK {
		t.Fatalf("approver's press: HTTP %d", code)
	}
	// The same signed request again, within slack-go's 5 minutes: refused.
	if code := signedPost(t, httpURL+"/slack/interactions", secret, pressedAt, press); code != http.StatusUnauthorized {
		t.Errorf("replayed press (same signature): HTTP %d, want 401", code)
	}
	if err := waitRollout(t, s.tc, id, 3*time.Minute); err != nil {
		t.Fatalf("rollout after approval: %v", err)
	}
	st, err := s.fw.Status(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	a := st.Waves[1].Approval
	if st.State != rollout.StateSucceeded || a.Outcome != rollout.ApprovalApproved || len(a.Votes) != 1 || a.Votes[0].By != "U0LEAD" || a.Votes[0].Via != "slack" {
		t.Errorf("final: %s, approval %+v", st.State, a)
	}
	if ans, ok := slk.answer(1); !ok || ans["response_type"] != "ephemeral" || !strings.Contains(fmt.Sprint(ans["text"]), "approved by U0LEAD") {
		t.Errorf("approver's answer: %v", ans)
	}
	for _, site := range []string{"ams-2", "fra-1"} {
		if git(t, s.bare, "rev-parse", "refs/heads/sites/"+site+"^{tree}") != git(t, s.bare, "rev-parse", c+"^{tree}") {
			t.Errorf("site %s does not run %s after the approval", site, rollout.Short(c))
		}
	}
	// The request's buttons were replaced by the decision; the thread ends with the result.
	waitFor(t, "the decision and the result in Slack", func() bool {
		decided := slk.find(func(v url.Values) bool {
			return v.Get("method") == "chat.update" && v.Get("ts") == request.Get("returned_ts") && strings.Contains(blocks(v), "approved by <@U0LEAD> via slack")
		})
		final := slk.find(func(v url.Values) bool {
			return v.Get("method") == "chat.postMessage" && strings.Contains(blocks(v), "Rolled out `"+rollout.Short(c)+"` to every wave")
		})
		return len(decided) == 1 && !strings.Contains(blocks(decided[0]), "fleetwave-approve") && len(final) == 1
	})

	// The last message links the rollout's report, served by fleetwave to whoever has the link.
	final := slk.find(func(v url.Values) bool {
		return v.Get("method") == "chat.postMessage" && strings.Contains(blocks(v), "Rolled out `"+rollout.Short(c)+"` to every wave")
	})
	link := regexp.MustCompile(`<(http://[^|]+/reports/[^|]+)\|report>`).FindStringSubmatch(blocks(final[0]))
	if link == nil {
		t.Fatalf("the last message links no report: %s", blocks(final[0]))
	}
	link[1] = html.UnescapeString(link[1]) // as Slack does: &amp; in mrkdwn is &
	page, code := httpGet(t, link[1])
	if code != http.StatusOK || !strings.HasPrefix(page, "# Rollout "+id+": Succeeded") || !strings.Contains(page, "| U0LEAD | approved | slack (sent by ") {
		t.Errorf("report page %s: HTTP %d\n%s", link[1], code, page)
	}
	if _, code := httpGet(t, strings.Replace(link[1], "sig=", "sig=0", 1)); code != http.StatusNotFound {
		t.Errorf("report page with a forged signature: HTTP %d", code)
	}
	if _, code := httpGet(t, strings.Replace(link[1], "exp=", "exp=1", 1)); code != http.StatusNotFound {
		t.Errorf("report page with a later expiry than signed: HTTP %d", code)
	}
	if _, code := httpGet(t, strings.Replace(link[1], ".md?", ".html?", 1)); code != http.StatusOK {
		t.Errorf("report page as HTML: HTTP %d", code)
	}

	// Any member may read status with the slash command, by rollout ID or commit.
	cmd := url.Values{"command": {"/fleetwave"}, "text": {"status " + rollout.Short(c)}, "user_id": {"U0STRANGER"}, "response_url": {slk.replies.URL}}.Encode()
	code, body := signedPostBody(t, httpURL+"/slack/commands", secret, time.Now(), cmd)
	var reply map[string]string
	_ = json.Unmarshal([]byte(body), &reply)
	if code != http.StatusOK || reply["response_type"] != "ephemeral" || !strings.Contains(reply["text"], "Succeeded") || !strings.Contains(reply["text"], "eu-west: Succeeded: approved by U0LEAD") {
		t.Errorf("/fleetwave status: HTTP %d %s", code, body)
	}
	// A rollout of another fleet is not this endpoint's business.
	cmd = url.Values{"command": {"/fleetwave"}, "text": {"abort rollout/other/1234567"}, "user_id": {"U0LEAD"}}.Encode()
	if _, body := signedPostBody(t, httpURL+"/slack/commands", secret, time.Now(), cmd); !strings.Contains(body, "is not a rollout of fleet demo") {
		t.Errorf("/fleetwave abort of another fleet's rollout: %s", body)
	}
	// The refusals are counted on /metrics.
	resp, err := http.Get(httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`fleetwave_slack_events_total{event="request_refused"} 4`, `fleetwave_slack_events_total{event="action_refused"} 1`,
		`fleetwave_slack_events_total{event="action_accepted"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	saveHistory(t, s.tc, id, "rollout-approval")
}

// httpGet fetches url and returns its body and status code.
func httpGet(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode
}
