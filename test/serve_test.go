//go:build e2e

package test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gitserver"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestServeIntake runs `fleetwave serve` against a real Temporal dev server and a git server:
// it registers its search attributes, a GitHub-format push event starts a rollout, and --poll
// finds a commit no event announced.
func TestServeIntake(t *testing.T) {
	bin := buildFleetwave(t)
	// No search attributes registered: serve registers them, as on a fresh Temporal cluster.
	tp := testenv.StartTemporal(t)
	gs, err := gitserver.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gs.Init("fleet")
	if err != nil {
		t.Fatal(err)
	}
	var branches []string
	for _, s := range sites {
		branches = append(branches, "sites/"+s)
	}
	if _, err := gitserver.Seed(repo, map[string]string{"fleetwave.yaml": plan + "  onNewCommit: queue\n", "apps/app.yaml": "version: 1\n"}, branches...); err != nil {
		t.Fatal(err)
	}
	base, stopGit, err := gitserver.Listen("127.0.0.1:0", gs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopGit)
	url := base + "/fleet.git"

	const secret = "serve-test-secret"
	httpURL := startServe(t, bin, tp.Address, url, []string{"FLEETWAVE_WEBHOOK_SECRET=" + secret}, "--poll", "1s")
	tc, err := client.Dial(client.Options{HostPort: tp.Address, Logger: quietLog{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()

	// The first poll rolls out the head that was there when serve started.
	seed := lsRemote(t, url, "refs/heads/main")
	if err := waitRollout(t, tc, workflows.RolloutID("demo", seed), 2*time.Minute); err != nil {
		t.Fatalf("rollout of the polled head: %v", err)
	}

	// A push announced by a GitHub-format event.
	pushed, _ := clonePush(t, url, "app v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	body, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "before": seed, "after": pushed,
		"repository": map[string]string{"full_name": "acme/fleet"}})
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	req, _ := http.NewRequest(http.MethodPost, httpURL+"/hooks/git", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "d-1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(reply), workflows.RolloutID("demo", pushed)) {
		t.Fatalf("push event: %d %s", resp.StatusCode, reply)
	}
	if err := waitRollout(t, tc, workflows.RolloutID("demo", pushed), 2*time.Minute); err != nil {
		t.Fatalf("rollout of the pushed commit: %v", err)
	}

	// The first event replayed once main moved on (a new delivery ID, signed right): the
	// commit is not the head any more, and nothing starts.
	moved, _ := clonePush(t, url, "app v2.1", map[string]string{"apps/app.yaml": "version: 2.1\n"})
	req, _ = http.NewRequest(http.MethodPost, httpURL+"/hooks/git", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "d-replayed")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	reply, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(reply), `"ignored"`) || !strings.Contains(string(reply), "is not the head of main") {
		t.Fatalf("replayed push event: %d %s", resp.StatusCode, reply)
	}
	if err := waitRollout(t, tc, workflows.RolloutID("demo", moved), 2*time.Minute); err != nil {
		t.Fatalf("rollout of the commit the poller found: %v", err)
	}

	// Another commit nobody announced: the poller finds it.
	silent, _ := clonePush(t, url, "app v3", map[string]string{"apps/app.yaml": "version: 3\n"})
	if err := waitRollout(t, tc, workflows.RolloutID("demo", silent), 2*time.Minute); err != nil {
		t.Fatalf("rollout of the polled commit: %v", err)
	}
	for _, s := range sites {
		if lsTree := git(t, repo, "rev-parse", "sites/"+s+"^{tree}"); lsTree != git(t, repo, "rev-parse", silent+"^{tree}") {
			t.Errorf("site %s is not on the last commit", s)
		}
	}
	resp, err = http.Get(httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `fleetwave_push_events_total{fleet="demo",result="accepted"} 1`) {
		t.Errorf("metrics do not count the push event:\n%s", metrics)
	}
}
