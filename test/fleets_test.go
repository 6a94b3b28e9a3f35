//go:build e2e

package test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/gitops/pushevent"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// postPush posts a generic push event of commit in repository, signed with secret, to
// endpoint, and returns the status code and the reply.
func postPush(t *testing.T, endpoint, repository, commit, secret string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(pushevent.Event{Repository: repository, Ref: "refs/heads/main", After: commit})
	req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(pushevent.SignatureHeader, pushevent.Sign(body, []byte(secret)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(reply)
}

// TestSeveralFleetsOneServe: one serve process serves two fleets from a config file, each with
// its own push event secret and Slack channel, behind one Slack app. Push events are routed by
// their signature and repository (or by /hooks/git/<fleet>), /fleetwave commands by the fleet
// their rollout names, and a fleet this server does not serve gets a clear answer. Both
// fleets' rollouts succeed.
func TestSeveralFleetsOneServe(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	tc := dialTemporal(t, tp.Address)
	alpha, alphaCommit := fleetRepo(t, "alpha", "app v2 of alpha")
	beta, betaCommit := fleetRepo(t, "beta", "app v2 of beta")
	config := filepath.Join(t.TempDir(), "fleets.yaml")
	writeFile(t, config, `apiVersion: fleetwave.dev/v1alpha1
kind: ServeConfig
fleets:
  - repo: `+alpha.URL+`
    webhookSecretEnv: ALPHA_SECRET
    slackChannel: "#alpha-deploys"
  - repo: `+beta.URL+`
    webhookSecretEnv: BETA_SECRET
    poll: 1h
`)
	const slackSecret = "one-slack-app"
	httpURL := startServe(t, bin, tp.Address, "", []string{"ALPHA_SECRET=alpha-secret", "BETA_SECRET=beta-secret",
		"FLEETWAVE_SLACK_SIGNING_SECRET=" + slackSecret}, "--config", config)

	// Each fleet's event, signed with its secret, starts its rollout.
	for _, c := range []struct{ repo, commit, secret, fleet string }{
		{alpha.URL, alphaCommit, "alpha-secret", "alpha"}, {beta.URL, betaCommit, "beta-secret", "beta"},
	} {
		code, reply := postPush(t, httpURL+"/hooks/git", c.repo, c.commit, c.secret)
		if code != http.StatusAccepted || !strings.Contains(reply, workflows.RolloutID(c.fleet, c.commit)) {
			t.Errorf("push event of fleet %s: %d %s", c.fleet, code, reply)
		}
	}
	// Beta's repository signed with alpha's secret: alpha's secret, not alpha's repo.
	if code, reply := postPush(t, httpURL+"/hooks/git", beta.URL, betaCommit, "alpha-secret"); code != http.StatusAccepted ||
		!strings.Contains(reply, `"ignored"`) || !strings.Contains(reply, "not the repo of fleet alpha") {
		t.Errorf("beta's event signed with alpha's secret: %d %s", code, reply)
	}
	if code, reply := postPush(t, httpURL+"/hooks/git", beta.URL, betaCommit, "nobody's"); code != http.StatusUnauthorized {
		t.Errorf("an event no fleet's secret signed: %d %s", code, reply)
	}
	if code, reply := postPush(t, httpURL+"/hooks/git/beta", "", betaCommit, "beta-secret"); code != http.StatusAccepted ||
		!strings.Contains(reply, workflows.RolloutID("beta", betaCommit)) {
		t.Errorf("/hooks/git/beta: %d %s", code, reply)
	}
	if code, reply := postPush(t, httpURL+"/hooks/git/gamma", "", betaCommit, "beta-secret"); code != http.StatusNotFound ||
		!strings.Contains(reply, `no fleet \"gamma\" is served here`) {
		t.Errorf("/hooks/git/gamma: %d %s", code, reply)
	}
	for _, id := range []string{workflows.RolloutID("alpha", alphaCommit), workflows.RolloutID("beta", betaCommit)} {
		if err := waitRollout(t, tc, id, 3*time.Minute); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}

	// The CLI takes a commit prefix, or <fleet>/<commit prefix>, where it asks for a rollout.
	for ref, want := range map[string]string{rollout.Short(alphaCommit): workflows.RolloutID("alpha", alphaCommit),
		"beta/" + betaCommit[:8]: workflows.RolloutID("beta", betaCommit)} {
		if out, err := fleetwaveCLI(t, bin, tp.Address, "status", ref); err != nil || !strings.HasPrefix(out, want+"  Succeeded") {
			t.Errorf("fleetwave status %s: %v\n%s", ref, err, out)
		}
	}
	if out, err := fleetwaveCLI(t, bin, tp.Address, "status", "0000000"); err == nil || !strings.Contains(out, "no rollout of a commit starting with 0000000") {
		t.Errorf("fleetwave status of a commit no rollout has: %v\n%s", err, out)
	}

	// One Slack app: a command goes to the fleet its rollout names.
	slash := func(text string) string {
		cmd := url.Values{"command": {"/fleetwave"}, "text": {text}, "user_id": {"U0READER"}}.Encode()
		code, body := signedPostBody(t, httpURL+"/slack/commands", slackSecret, time.Now(), cmd)
		if code != http.StatusOK {
			t.Errorf("/fleetwave %s: HTTP %d %s", text, code, body)
		}
		return body
	}
	for _, c := range []struct{ text, want string }{
		{"status " + workflows.RolloutID("beta", betaCommit), string(rollout.StateSucceeded)},
		{"status alpha/" + rollout.Short(alphaCommit), string(rollout.StateSucceeded)},
		{"status " + rollout.Short(betaCommit), string(rollout.StateSucceeded)},
		{"status rollout/gamma/" + rollout.Short(betaCommit), "fleet gamma is not served here (this fleetwave serves alpha, beta)"},
		{"abort gamma/1234567", "fleet gamma is not served here"},
	} {
		if body := slash(c.text); !strings.Contains(body, c.want) {
			t.Errorf("/fleetwave %s: %s, want %q", c.text, body, c.want)
		}
	}
	// The config's Slack channel went to alpha's plan, whose file names none, and only there.
	for fleet, commit := range map[string]string{"alpha": alphaCommit, "beta": betaCommit} {
		var loaded activities.LoadPlanResult
		for _, e := range historyEvents(t.Context(), t, tc, workflows.RolloutID(fleet, commit)) {
			if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && loaded.Plan == nil {
				_ = workflows.DataConverter().FromPayloads(a.GetResult(), &loaded)
			}
		}
		if loaded.Plan == nil {
			t.Fatalf("no plan loaded in the history of fleet %s's rollout", fleet)
		}
		channel := ""
		if loaded.Plan.Notify.Slack != nil {
			channel = loaded.Plan.Notify.Slack.Channel
		}
		if want := map[string]string{"alpha": "#alpha-deploys", "beta": ""}[fleet]; channel != want {
			t.Errorf("fleet %s's plan has Slack channel %q, want %q", fleet, channel, want)
		}
	}
}
