//go:build e2e

package test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// startServe runs `fleetwave serve --driver sim` for the repo at url against the Temporal at
// address, with env added to its environment, waits until its /healthz answers, and stops it
// when the test ends (printing its output if the test failed). It returns the base URL of its
// HTTP endpoints.
func startServe(t *testing.T, bin, address, url string, env []string, args ...string) string {
	t.Helper()
	_, httpURL := startServeProc(t, bin, address, url, env, args...)
	return httpURL
}

// startServeProc is startServe, also returning the process (a test may kill it). With url ""
// args say which fleets to serve (--config).
func startServeProc(t *testing.T, bin, address, url string, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	port, err := devtemporal.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"serve", "--driver", "sim", "--http", "127.0.0.1:" + strconv.Itoa(port)}
	if url != "" {
		base = append(base, "--repo", url)
	}
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Env = append(append(os.Environ(), "TEMPORAL_ADDRESS="+address), env...)
	logs := &syncLog{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		<-exited
		if t.Failed() {
			t.Logf("serve output:\n%s", logs.String())
		}
	})
	httpURL := "http://127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, "serve /healthz", func() bool {
		resp, err := http.Get(httpURL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return cmd, httpURL
}

// dialTemporal is a client of the Temporal at address with fleetwave's converters (as every
// fleetwave client must use), closed when the test ends.
func dialTemporal(t *testing.T, address string) client.Client {
	t.Helper()
	tc, err := client.Dial(client.Options{HostPort: address, Logger: quietLog{}, DataConverter: workflows.DataConverter(), FailureConverter: workflows.FailureConverter()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	return tc
}

// syncLog collects a process's output while a test may read it.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// faultPlan is the e2e plan with a simulated reconcile fast enough for the tests.
func faultPlan(extra string) map[string]string {
	return map[string]string{"fleetwave.yaml": plan + extra, "apps/app.yaml": "version: 1\n",
		".fleetwave/sim.yaml": "reconcileDelay: 200ms\ndegraded: []\n"}
}

func siteBranches() []string {
	var out []string
	for _, s := range sites {
		out = append(out, "sites/"+s)
	}
	return out
}

// TestRevertSurvivesLostPushResponses: the git server applies every push of the rollout and
// then answers 502, as a proxy failing after the server accepted the push would. The canary's
// promotion lands although its activity failed; the retry finds it. The canary then degrades,
// and it must be reverted (the revert's answer is lost too): exactly one promotion and one
// revert commit on its branch, checked with the git CLI.
func TestRevertSurvivesLostPushResponses(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	gs := gittest.NewServer(t, "fleet", faultPlan(""), siteBranches()...)
	bad := gs.CommitOn(t, "main", "app v2, degrading the canary", map[string]string{
		"apps/app.yaml": "version: 2\n", ".fleetwave/sim.yaml": "reconcileDelay: 200ms\ndegraded: [ams-1]\n"})
	before := gs.Head(t, "sites/ams-1")
	gs.LoseResponses.Store(2) // the promotion's and the revert's
	startServe(t, bin, tp.Address, gs.URL, nil)

	id := workflows.RolloutID("demo", bad)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", bad); err != nil || out != id {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	tc, err := client.Dial(client.Options{HostPort: tp.Address, Logger: quietLog{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := waitRollout(t, tc, id, 2*time.Minute); err == nil || !strings.Contains(err.Error(), "site ams-1 degraded in wave canary") {
		t.Fatalf("rollout ended with %v, want the canary degraded", err)
	}
	if n := gs.Lost.Load(); n != 2 {
		t.Errorf("%d push responses lost, want 2 (the promotion and the revert)", n)
	}

	subjects := git(t, gs.Dir, "log", "--format=%s", before+"..sites/ams-1")
	want := `Revert "Promote ` + rollout.Short(bad) + ` to ams-1: app v2, degrading the canary"` + "\n" +
		"Promote " + rollout.Short(bad) + " to ams-1: app v2, degrading the canary"
	if subjects != want {
		t.Errorf("git log sites/ams-1:\n%s\nwant exactly one promotion and one revert:\n%s", subjects, want)
	}
	if got, was := git(t, gs.Dir, "rev-parse", "sites/ams-1^{tree}"), git(t, gs.Dir, "rev-parse", before+"^{tree}"); got != was {
		t.Errorf("sites/ams-1 tree %s after the revert, want the tree before the promotion %s", got, was)
	}
	for _, s := range sites[1:] {
		if head := gs.Head(t, "sites/"+s); head != gs.Seed {
			t.Errorf("site %s was written (%s) although the canary failed", s, head)
		}
	}
	saveHistory(t, tc, id, "rollout-lost-push")
	saveHistory(t, tc, workflows.WaveID(id, "canary"), "wave-lost-push")
	st := statusJSON(t, bin, tp.Address, id)
	canary := st.Waves[0].Sites[0]
	if st.State != rollout.StateFailed || canary.Verdict != rollout.VerdictReverted || !canary.Promoted || canary.Revert != gs.Head(t, "sites/ams-1") {
		t.Errorf("status %s, canary %+v; want Failed with ams-1 promoted and reverted by %s", st.State, canary, gs.Head(t, "sites/ams-1"))
	}
	// serve --driver sim wrote real branches for simulated sites: the status says so.
	if !st.Simulated {
		t.Error("the status of a rollout run by serve --driver sim does not say its sites were simulated")
	}
}

// TestTerminatedRolloutDoesNotWedgeTheFleet: a rollout terminated from outside runs no more
// code, so it never tells its fleet it ended. The fleet's coordinator notices anyway and rolls
// out the commit queued behind it; list and status show the terminated rollout as Terminated.
func TestTerminatedRolloutDoesNotWedgeTheFleet(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	gs := gittest.NewServer(t, "fleet", faultPlan("  onNewCommit: queue\n"), siteBranches()...)
	// The first commit's canary bakes for an hour: it is still running when terminated.
	slow := gs.CommitOn(t, "main", "app v2, long bake", map[string]string{
		"apps/app.yaml": "version: 2\n", "fleetwave.yaml": strings.Replace(plan, "bake: 2s}", "bake: 1h}", 1) + "  onNewCommit: queue\n"})
	startServe(t, bin, tp.Address, gs.URL, nil)
	tc, err := client.Dial(client.Options{HostPort: tp.Address, Logger: quietLog{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	fw := workflows.NewClient(tc, "")

	first := workflows.RolloutID("demo", slow)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", slow); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	waitFor(t, "the first rollout's canary to bake", func() bool {
		st, err := fw.Status(context.Background(), first)
		return err == nil && st.Waves[0].State == rollout.StateBaking
	})
	next := gs.CommitOn(t, "main", "app v3", map[string]string{"apps/app.yaml": "version: 3\n", "fleetwave.yaml": plan + "  onNewCommit: queue\n"})
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", next); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	waitFor(t, "the next commit to be queued", func() bool {
		v, err := tc.QueryWorkflow(context.Background(), workflows.FleetID("demo"), "", workflows.QueryFleet)
		var fs workflows.FleetState
		return err == nil && v.Get(&fs) == nil && len(fs.Queue) == 1 && fs.Queue[0] == next
	})
	if err := tc.TerminateWorkflow(context.Background(), first, "", "stuck: terminated by the on-call"); err != nil {
		t.Fatal(err)
	}

	second := workflows.RolloutID("demo", next)
	if err := waitRollout(t, tc, second, 2*time.Minute); err != nil {
		t.Fatalf("the queued rollout after the termination: %v", err)
	}
	for _, s := range sites {
		if got, want := git(t, gs.Dir, "rev-parse", "sites/"+s+"^{tree}"), git(t, gs.Dir, "rev-parse", next+"^{tree}"); got != want {
			t.Errorf("site %s is not on the queued commit", s)
		}
	}
	out, err := fleetwaveCLI(t, bin, tp.Address, "list", "--fleet", "demo", "-o", "json")
	list, jerr := listItems[workflows.Summary](out)
	if err != nil || jerr != nil {
		t.Fatalf("fleetwave list: %v: %s", err, out)
	}
	states := map[string]string{}
	for _, s := range list {
		states[s.Rollout] = s.State
	}
	if states[first] != string(rollout.StateTerminated) || states[second] != string(rollout.StateSucceeded) {
		t.Errorf("list shows %v, want %s Terminated and %s Succeeded", states, first, second)
	}
	saveHistory(t, tc, workflows.FleetID("demo"), "fleet-terminated")
	if st := statusJSON(t, bin, tp.Address, first); st.State != rollout.StateTerminated || st.FinishedAt.IsZero() {
		t.Errorf("status of the terminated rollout: %s finished %s", st.State, st.FinishedAt)
	}
	out, _ = fleetwaveCLI(t, bin, tp.Address, "list", "--state", "Terminated")
	if !strings.Contains(out, first) || strings.Contains(out, second) {
		t.Errorf("list --state Terminated:\n%s", out)
	}
}
