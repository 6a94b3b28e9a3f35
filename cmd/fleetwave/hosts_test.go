package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"go.temporal.io/sdk/mocks"

	"github.com/fleetwave/fleetwave/workflows"
)

// TestGitHookHosts sends the hosts' own payloads (fixtures in
// gitops/pushevent/testdata/hooks) through the handler: a push to main starts a rollout,
// pings and tag pushes start nothing.
func TestGitHookHosts(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile("../../gitops/pushevent/testdata/hooks/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mac := func(body []byte) string {
		m := hmac.New(sha256.New, []byte(testSecret))
		m.Write(body)
		return hex.EncodeToString(m.Sum(nil))
	}
	feature := []byte(strings.Replace(string(read("github-push.json")), `"ref": "refs/heads/main"`, `"ref": "refs/heads/feature"`, 1))
	tests := []struct {
		name        string
		body        []byte
		headers     map[string]string
		wantCode    int
		wantStatus  string
		wantRollout string
	}{
		{"github push", read("github-push.json"), map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + mac(read("github-push.json"))},
			http.StatusAccepted, "accepted", "rollout/demo/0d1a26e67d8f"},
		{"github ping", read("github-ping.json"), map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + mac(read("github-ping.json"))},
			http.StatusAccepted, "ignored", ""},
		{"github forged", read("github-push.json"), map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + mac([]byte("other"))},
			http.StatusUnauthorized, "rejected", ""},
		{"gitlab push", read("gitlab-push.json"), map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": testSecret},
			http.StatusAccepted, "accepted", "rollout/demo/da1560886d4f"},
		{"gitlab tag push", read("gitlab-tag-push.json"), map[string]string{"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": testSecret},
			http.StatusAccepted, "ignored", ""},
		{"gitlab wrong token", read("gitlab-push.json"), map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"},
			http.StatusUnauthorized, "rejected", ""},
		{"gitea push", read("gitea-push.json"), map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": mac(read("gitea-push.json"))},
			http.StatusAccepted, "accepted", "rollout/demo/bffeb7422404"},
		{"github push to another branch", feature, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + mac(feature)},
			http.StatusAccepted, "ignored", ""},
		{"github branch deletion", read("github-delete.json"), map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + mac(read("github-delete.json"))},
			http.StatusAccepted, "ignored", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := mocks.NewClient(t)
			var calls []startCall
			if tt.wantRollout != "" {
				expectStart(tc, newRun(t, "fleet/demo", "run-1"), nil, &calls)
			}
			n, _ := newTestNode(t, tc, testSecret)
			req := httptest.NewRequest(http.MethodPost, "/hooks/git", bytes.NewReader(tt.body))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			n.handler().ServeHTTP(rec, req)
			var reply hookReply
			if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
				t.Fatalf("reply %q: %v", rec.Body, err)
			}
			if rec.Code != tt.wantCode || reply.Status != tt.wantStatus || reply.Rollout != tt.wantRollout {
				t.Errorf("got %d %+v, want %d %s %s", rec.Code, reply, tt.wantCode, tt.wantStatus, tt.wantRollout)
			}
			if want := map[bool]int{true: 1, false: 0}[tt.wantRollout != ""]; len(calls) != want {
				t.Errorf("%d workflows started, want %d", len(calls), want)
			}
			if len(calls) == 1 && (calls[0].id != "fleet/demo" || !strings.HasPrefix(calls[0].arg.(workflows.CommitSignal).Commit, tt.wantRollout[len("rollout/demo/"):])) {
				t.Errorf("submitted %+v", calls[0])
			}
		})
	}
}
