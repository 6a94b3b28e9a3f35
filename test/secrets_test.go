//go:build e2e

package test

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	enums "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestSecretsStayHidden (R6): the whole stack runs with known secret values (the git token,
// the webhook secret, the Slack token and signing secret, and a health check's password and
// token, which the plan names as {env.NAME} and the worker's environment holds) through a
// rollout that fails its check, posts to Slack and reverts. None of the values
// appears in the server's logs, a workflow history (payloads decoded), a Slack message, the
// commits' messages, or `fleetwave status`.
func TestSecretsStayHidden(t *testing.T) {
	secrets := map[string]string{
		"git token":          "ghp-git-SECRET-1234",
		"webhook secret":     "whsec-SECRET-5678",
		"slack token":        "xoxb-SECRET-9012",
		"slack signing":      "sign-SECRET-3456",
		"check token":        "chk-SECRET-7890",
		"check url password": "pw-SECRET-2468",
	}
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	slk := newE2ESlack(t)
	var badToken atomic.Int32
	probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != secrets["check url password"] || r.URL.Query().Get("token") != secrets["check token"] {
			badToken.Add(1)
		}
		if strings.Contains(r.URL.Path, "ams-1") {
			// An error page that quotes the request, as some servers do.
			http.Error(w, "unhealthy: "+r.URL.String(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer probe.Close()
	// The plan names the credentials; the worker's environment holds them.
	checkURL := strings.Replace(probe.URL, "http://", "http://user:{env.FLEETWAVE_CHECK_PASSWORD}@", 1) + "/health/{site}?token={env.FLEETWAVE_CHECK_TOKEN}"
	p := strings.Replace(plan, "  health: {interval: 500ms, failureThreshold: 2, convergenceTimeout: 30s, unknownTimeout: 10s}\n",
		"  health:\n    interval: 500ms\n    failureThreshold: 2\n    convergenceTimeout: 30s\n    unknownTimeout: 10s\n"+
			"    checks:\n      - {name: smoke, http: {url: \""+checkURL+"\", status: 200}}\n"+
			"  notify: {slack: {channel: \"#deploys\"}}\n", 1)
	if !strings.Contains(p, "checks:") {
		t.Fatal("plan edit did not apply")
	}
	files := faultPlan("")
	files["fleetwave.yaml"] = p
	gs := gittest.NewServer(t, "fleet", files, siteBranches()...)
	commit := gs.CommitOn(t, "main", "app v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	proc, httpURL := startServeProc(t, bin, tp.Address, gs.URL, []string{
		"FLEETWAVE_GIT_TOKEN=" + secrets["git token"],
		"FLEETWAVE_WEBHOOK_SECRET=" + secrets["webhook secret"],
		"FLEETWAVE_SLACK_TOKEN=" + secrets["slack token"],
		"FLEETWAVE_SLACK_SIGNING_SECRET=" + secrets["slack signing"],
		"FLEETWAVE_SLACK_API_URL=" + slk.api.GetAPIURL(),
		"FLEETWAVE_CHECK_TOKEN=" + secrets["check token"],
		"FLEETWAVE_CHECK_PASSWORD=" + secrets["check url password"],
	})

	// A push event signed right, and one signed wrong.
	body, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "before": gs.Seed, "after": commit, "repository": map[string]string{"full_name": "acme/fleet"}})
	for i, key := range []string{secrets["webhook secret"], "wrong-key"} {
		m := hmac.New(sha256.New, []byte(key))
		m.Write(body)
		req, _ := http.NewRequest(http.MethodPost, httpURL+"/hooks/git", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprint("d-", i))
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		reply, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkHidden(t, "push event reply", string(reply), secrets)
	}
	tc := dialTemporal(t, tp.Address)
	id := workflows.RolloutID("demo", commit)
	if err := waitRollout(t, tc, id, 3*time.Minute); err == nil || !strings.Contains(err.Error(), "site ams-1 degraded") {
		t.Fatalf("rollout ended with %v, want the canary's check to fail", err)
	}
	if n := badToken.Load(); n > 0 {
		t.Errorf("the probe got %d requests without the credentials from the environment", n)
	}
	out, _ := fleetwaveCLI(t, bin, tp.Address, "status", id, "-o", "json")
	checkHidden(t, "fleetwave status", out, secrets)
	checkHidden(t, "commit messages", git(t, gs.Dir, "log", "--all", "--format=%B"), secrets)
	for _, c := range slk.find(func(url.Values) bool { return true }) {
		c.Del("token") // the API call's own credential, sent to Slack on purpose
		checkHidden(t, "Slack "+c.Get("method"), fmt.Sprint(c), secrets)
	}

	// Every workflow history, payloads decoded.
	resp, err := tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Executions) < 3 {
		t.Fatalf("%d workflows, want the fleet, the rollout and its waves", len(resp.Executions))
	}
	for _, e := range resp.Executions {
		it := tc.GetWorkflowHistory(context.Background(), e.Execution.WorkflowId, e.Execution.RunId, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		h := &historypb.History{}
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, ev)
		}
		checkHidden(t, "history of "+e.Execution.WorkflowId, historyText(t, h), secrets)
	}

	logs := proc.Stdout.(*syncLog).String()
	if !strings.Contains(logs, "push event refused") {
		t.Errorf("the wrongly signed event was not logged:\n%s", logs)
	}
	checkHidden(t, "serve logs", logs, secrets)
}

// checkHidden fails the test for every secret value found in text.
func checkHidden(t *testing.T, where, text string, secrets map[string]string) {
	t.Helper()
	for name, v := range secrets {
		if strings.Contains(text, v) {
			i := strings.Index(text, v)
			t.Errorf("%s shows the %s: ...%s...", where, name, text[max(0, i-80):min(len(text), i+len(v)+40)])
		}
	}
}

var payloadData = regexp.MustCompile(`"data":\s*"([A-Za-z0-9+/=]+)"`)

// historyText is a history as JSON with every payload's data decoded (base64, and zlib where
// the data converter compressed it) appended, so a search sees what the payloads hold.
func historyText(t *testing.T, h *historypb.History) string {
	t.Helper()
	js, err := temporalproto.CustomJSONMarshalOptions{}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.Write(js)
	for _, m := range payloadData.FindAllSubmatch(js, -1) {
		raw, err := base64.StdEncoding.DecodeString(string(m[1]))
		if err != nil {
			continue
		}
		b.Write(raw)
		if zr, err := zlib.NewReader(bytes.NewReader(raw)); err == nil {
			plain, _ := io.ReadAll(zr)
			b.Write(plain)
		}
	}
	return b.String()
}
