//go:build e2e

package test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// secondWriter is someone else pushing to the fleet repo with the git CLI while fleetwave
// writes: a commit on a branch every pause, retrying (fetch, rebase) when fleetwave pushed
// first, as a person would. It records every commit it got in.
type secondWriter struct {
	url, dir string
	mu       sync.Mutex
	pushed   map[string][]string // branch -> commits
	errs     []string
}

func (w *secondWriter) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Other", "GIT_AUTHOR_EMAIL=other@example.com", "GIT_COMMITTER_NAME=Other", "GIT_COMMITTER_EMAIL=other@example.com")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// commit pushes one commit touching path on branch, retrying a rejected push up to 20 times.
func (w *secondWriter) commit(branch, path, content string) {
	for attempt := 0; attempt < 20; attempt++ {
		if _, err := w.git("fetch", "--quiet", "origin"); err != nil {
			continue
		}
		if out, err := w.git("checkout", "--quiet", "-B", branch, "origin/"+branch); err != nil {
			w.fail(fmt.Sprintf("checkout %s: %v: %s", branch, err, out))
			return
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(w.dir, path)), 0o755); err != nil {
			w.fail(err.Error())
			return
		}
		if err := os.WriteFile(filepath.Join(w.dir, path), []byte(content), 0o644); err != nil {
			w.fail(err.Error())
			return
		}
		if out, err := w.git("add", path); err != nil {
			w.fail(fmt.Sprintf("add: %v: %s", err, out))
			return
		}
		if out, err := w.git("commit", "--quiet", "-m", "other: "+path); err != nil {
			w.fail(fmt.Sprintf("commit: %v: %s", err, out))
			return
		}
		sha, _ := w.git("rev-parse", "HEAD")
		if _, err := w.git("push", "--quiet", "origin", branch); err != nil {
			continue // fleetwave pushed first: fetch and try again
		}
		w.mu.Lock()
		w.pushed[branch] = append(w.pushed[branch], sha)
		w.mu.Unlock()
		return
	}
	w.fail("could not get a commit onto " + branch + " in 20 tries")
}

func (w *secondWriter) fail(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, msg)
}

// TestGitContention (R3): while a rollout writes the site branches, someone else pushes to
// them too, and to the source branch. fleetwave re-reads and retries rejected pushes, never
// forces: every commit the other writer got in is still in its branch's history at the end,
// the rollout of the source branch's last head succeeds, and each of its promotions is there
// once.
func TestGitContention(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	gs := gittest.NewServer(t, "fleet", faultPlan("  onNewCommit: queue\n"), siteBranches()...)
	first := gs.CommitOn(t, "main", "app v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	startServe(t, bin, tp.Address, gs.URL, nil)
	tc := dialTemporal(t, tp.Address)

	w := &secondWriter{url: gs.URL, dir: filepath.Join(t.TempDir(), "other"), pushed: map[string][]string{}}
	if out, err := exec.Command("git", "clone", "--quiet", gs.URL, w.dir).CombinedOutput(); err != nil {
		t.Fatalf("clone: %v: %s", err, out)
	}
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", first); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	// Eight commits to the site branches and one to main, as the rollout runs.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 8 {
			s := sites[i%len(sites)]
			w.commit("sites/"+s, fmt.Sprintf("other/%s-%d.txt", s, i), fmt.Sprint(i))
			if i == 4 {
				w.commit("main", "other/notes.txt", "written by someone else")
			}
			time.Sleep(400 * time.Millisecond) // the other writer's pace
		}
	}()
	<-done
	w.mu.Lock()
	errs := w.errs
	w.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("the other writer failed: %v", errs)
	}
	last := gs.Head(t, "main")
	if last == first {
		t.Fatal("the other writer's commit to main is missing")
	}
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", last); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, workflows.RolloutID("demo", first), 3*time.Minute); err != nil {
		t.Errorf("rollout of %s under contention: %v", rollout.Short(first), err)
	}
	if err := waitRollout(t, tc, workflows.RolloutID("demo", last), 3*time.Minute); err != nil {
		t.Errorf("rollout of the other writer's %s: %v", rollout.Short(last), err)
	}
	for branch, commits := range w.pushed {
		for _, c := range commits {
			if _, err := gittest.GitErr(gs.Dir, "merge-base", "--is-ancestor", c, branch); err != nil {
				t.Errorf("the other writer's %s is no longer in %s: a push was forced", rollout.Short(c), branch)
			}
		}
	}
	for _, s := range sites {
		log := git(t, gs.Dir, "log", "--format=%s", gs.Seed+"..sites/"+s)
		for _, c := range []string{first, last} {
			if n := strings.Count(log, "Promote "+rollout.Short(c)+" to "+s+":"); n != 1 {
				t.Errorf("sites/%s has %d promotions of %s, want 1:\n%s", s, n, rollout.Short(c), log)
			}
		}
	}
}

// bakingCanary is a rollout on `serve --driver sim` whose canary bakes for 4 s, the moment the
// git tests take the git server away from it.
type bakingCanary struct {
	bin, address string
	gs           *gittest.Server
	tc           client.Client
	fw           *workflows.Client
	id, commit   string
}

// startBakingCanary starts the stack, rolls out a commit with this subject and returns once its
// canary bakes.
func startBakingCanary(t *testing.T, subject string) bakingCanary {
	t.Helper()
	b := bakingCanary{bin: buildFleetwave(t)}
	b.address = testenv.StartTemporal(t).Address
	files := faultPlan("")
	files["fleetwave.yaml"] = strings.Replace(plan, "bake: 2s}", "bake: 4s}", 1)
	b.gs = gittest.NewServer(t, "fleet", files, siteBranches()...)
	b.commit = b.gs.CommitOn(t, "main", subject, map[string]string{"apps/app.yaml": "version: 2\n"})
	startServe(t, b.bin, b.address, b.gs.URL, nil)
	b.tc = dialTemporal(t, b.address)
	b.fw = workflows.NewClient(b.tc, "")
	b.id = workflows.RolloutID("demo", b.commit)
	if out, err := fleetwaveCLI(t, b.bin, b.address, "start", "--fleet", "demo", b.commit); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	waitFor(t, "the canary to bake", func() bool {
		st, err := b.fw.Status(context.Background(), b.id)
		return err == nil && len(st.Waves) > 0 && st.Waves[0].State == rollout.StateBaking
	})
	return b
}

// gitOutage is how long TestGitOutage keeps the git server away: a minute in `make chaos`.
var gitOutage = flag.Duration("chaos.outage", 5*time.Second, "how long TestGitOutage keeps the git server down")

// TestGitOutage (R3): the git server goes away while the canary bakes, so the next wave's
// promotion meets a refused connection. The rollout waits and retries; once the server is back
// it goes on, and succeeds with one promotion per site.
func TestGitOutage(t *testing.T) {
	b := startBakingCanary(t, "app v2, through an outage")
	gs, tc, fw, id, commit := b.gs, b.tc, b.fw, b.id, b.commit
	gs.Stop()
	down := time.Now()
	waitFor(t, "the next wave's promotion to meet the outage", func() bool {
		st, err := fw.Status(context.Background(), id)
		return err == nil && strings.Contains(strings.Join(st.Waiting, "\n"), "Promote (attempt")
	})
	if st, _ := fw.Status(context.Background(), id); !strings.Contains(strings.Join(st.Waiting, "\n"), "connection refused") {
		t.Logf("waiting on: %v", st.Waiting)
	}
	time.Sleep(time.Until(down.Add(*gitOutage))) // the outage itself
	gs.Restart(t)
	if err := waitRollout(t, tc, id, 5*time.Minute); err != nil {
		t.Fatalf("rollout through a %s git outage: %v", *gitOutage, err)
	}
	for _, s := range sites {
		got := git(t, gs.Dir, "log", "--format=%s", gs.Seed+"..sites/"+s)
		if want := "Promote " + rollout.Short(commit) + " to " + s + ": app v2, through an outage"; got != want {
			t.Errorf("git log sites/%s:\n%s\nwant exactly one promotion:\n%s", s, got, want)
		}
	}
}

// TestAbortCutsPushRetries (issue 14, hole 2): the git server refuses every push (503) from
// the moment the canary bakes, so the next wave's promotion retries with backoff, for up to 30
// minutes. An operator's abort cancels it: the rollout ends aborted while the server still
// refuses, the wave read from git that nothing landed, and the git CLI shows the canary's
// promotion and nothing else.
func TestAbortCutsPushRetries(t *testing.T) {
	b := startBakingCanary(t, "app v2, aborted mid-push")
	bin, address, gs, tc, fw, id, commit := b.bin, b.address, b.gs, b.tc, b.fw, b.id, b.commit
	gs.RefusePushes.Store(true)
	waitFor(t, "the next wave's promotion to be refused and retried", func() bool {
		st, err := fw.Status(context.Background(), id)
		return err == nil && gs.Refused.Load() >= 2 && strings.Contains(strings.Join(st.Waiting, "\n"), "Promote (attempt")
	})
	if out, err := fleetwaveCLI(t, bin, address, "abort", id, "--reason", "git is down"); err != nil {
		t.Fatalf("fleetwave abort: %v: %s", err, out)
	}
	err := waitRollout(t, tc, id, 3*time.Minute)
	if err == nil || !strings.Contains(err.Error(), "abort") {
		t.Fatalf("rollout ended with %v, want aborted", err)
	}
	if !gs.RefusePushes.Load() {
		t.Fatal("the server stopped refusing") // the rollout must have ended without a push getting through
	}
	st, serr := fw.Status(context.Background(), id)
	if serr != nil {
		t.Fatal(serr)
	}
	if st.State != rollout.StateAborted || len(st.Waves) < 2 || st.Waves[1].State != rollout.StateAborted {
		t.Fatalf("rollout %s, waves %+v; want the rollout and the eu wave aborted", st.State, st.Waves)
	}
	for _, s := range st.Waves[1].Sites {
		if s.Promoted {
			t.Errorf("eu site %s is recorded promoted, but no push got through", s.Name)
		}
	}
	for _, s := range sites {
		got := git(t, gs.Dir, "log", "--format=%s", gs.Seed+"..sites/"+s)
		want := ""
		if s == "ams-1" {
			want = "Promote " + rollout.Short(commit) + " to ams-1: app v2, aborted mid-push"
		}
		if got != want {
			t.Errorf("git log sites/%s:\n%s\nwant:\n%s", s, got, want)
		}
	}
	saveHistory(t, tc, workflows.WaveID(id, "eu"), "wave-abort-push")
	t.Logf("%d pushes refused before the abort cut the retries", gs.Refused.Load())
}
