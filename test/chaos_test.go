//go:build e2e

package test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// chaosSeeds is how many seeded crash scenarios TestWorkerCrashes runs: 2 in `make test`,
// 50 in `make chaos`.
var chaosSeeds = flag.Int("chaos.seeds", 2, "seeded worker-crash scenarios TestWorkerCrashes runs")

// waveOf is the plan's waves by site.
var waveOf = map[string]string{"ams-1": "canary", "ams-2": "eu", "fra-1": "eu", "nyc-1": "fleet", "nyc-2": "fleet", "sfo-1": "fleet"}

// chaosCase is one seeded scenario: which site the commit degrades ("" for none), how many
// push answers the git server loses after applying the push, and when the worker is killed.
type chaosCase struct {
	seed    uint64
	degrade string
	lose    int
	kills   []time.Duration
	// revertKill is how long after the rollout starts rolling back (when a site degrades)
	// the worker is killed once more: a kill during the revert, whenever it comes.
	revertKill time.Duration
}

func newChaosCase(seed uint64) chaosCase {
	r := rand.New(rand.NewPCG(seed, 0xf1ee7))
	c := chaosCase{seed: seed, degrade: []string{"", "", "ams-1", "fra-1", "sfo-1"}[r.IntN(5)], lose: r.IntN(3)}
	for range 1 + r.IntN(2) {
		c.kills = append(c.kills, time.Duration(r.Int64N(int64(7*time.Second))))
	}
	c.revertKill = time.Duration(r.Int64N(int64(300 * time.Millisecond)))
	return c
}

// TestWorkerCrashes (R1): rollouts run on `serve --driver sim` while the worker is killed with
// kill -9 at seeded random moments (during a push, between a push landing and its activity
// completing, which a git server losing push answers reaches every time, during a bake, during
// a revert) and started again. Afterwards the git CLI checks every site branch: exactly one
// promotion where the wave ran, exactly one revert where the rollback scope says, nothing on
// the waves after a failure, and the reverted trees are the trees from before; the rollout's
// result names the degraded site.
func TestWorkerCrashes(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	tc := dialTemporal(t, tp.Address)
	crashes, inRevert, lost := 0, 0, 0
	for seed := range uint64(*chaosSeeds) {
		c := newChaosCase(seed + 1)
		t.Run(fmt.Sprintf("seed %d", c.seed), func(t *testing.T) {
			n, r, l := runChaosCase(t, bin, tp.Address, tc, c)
			crashes, inRevert, lost = crashes+n, inRevert+r, lost+l
		})
	}
	t.Logf("%d scenarios, %d worker crashes injected and survived (%d of them while the rollout rolled back), %d push answers lost after the push landed",
		*chaosSeeds, crashes, inRevert, lost)
}

// runChaosCase runs one scenario and returns the crashes injected, how many of them while the
// rollout rolled back, and the push answers lost.
func runChaosCase(t *testing.T, bin, address string, tc client.Client, c chaosCase) (crashes, inRevert, lost int) {
	t.Logf("degrade %q, %d push answers lost, kills at %v", c.degrade, c.lose, c.kills)
	fleet := fmt.Sprintf("chaos%d", c.seed)
	files := faultPlan("")
	files["fleetwave.yaml"] = strings.Replace(files["fleetwave.yaml"], "metadata: {name: demo}", "metadata: {name: "+fleet+"}", 1)
	gs := gittest.NewServer(t, "fleet", files, siteBranches()...)
	degraded := "[]"
	if c.degrade != "" {
		degraded = "[" + c.degrade + "]"
	}
	subject := "app v2, chaos seed " + fmt.Sprint(c.seed)
	commit := gs.CommitOn(t, "main", subject, map[string]string{
		"apps/app.yaml": "version: 2\n", ".fleetwave/sim.yaml": "reconcileDelay: 200ms\ndegraded: " + degraded + "\n"})
	gs.LoseResponses.Store(int32(c.lose))

	proc, _ := startServeProc(t, bin, address, gs.URL, nil)
	id := workflows.RolloutID(fleet, commit)
	if out, err := fleetwaveCLI(t, bin, address, "start", "--fleet", fleet, commit); err != nil || out != id {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	start := time.Now()
	kill := func() {
		if err := proc.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_, _ = proc.Process.Wait()
		proc, _ = startServeProc(t, bin, address, gs.URL, nil)
		crashes++
	}
	for _, at := range c.kills {
		// The fault's moment is the scenario itself: sleep until it.
		time.Sleep(time.Until(start.Add(at)))
		kill()
	}
	if c.degrade != "" {
		// Once more while the rollout rolls back: watch for it, then wait the scenario's delay.
		fw := workflows.NewClient(tc, "")
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			st, serr := fw.Status(context.Background(), id)
			if serr == nil && st.State == rollout.StateRollingBack {
				time.Sleep(c.revertKill) // the fault's moment within the revert
				kill()
				inRevert++
				break
			}
			if serr == nil && st.State.Done() {
				t.Logf("the rollback ended before the watch saw it: no kill during the revert")
				break
			}
			time.Sleep(20 * time.Millisecond) // the watch's pace
		}
	}
	err := waitRollout(t, tc, id, 5*time.Minute)

	// The result.
	failedWave := waveOf[c.degrade]
	switch {
	case c.degrade == "" && err != nil:
		t.Errorf("a healthy rollout ended with %v", err)
	case c.degrade != "" && (err == nil || !strings.Contains(err.Error(), "site "+c.degrade+" degraded in wave "+failedWave)):
		t.Errorf("a rollout degrading %s ended with %v", c.degrade, err)
	}

	// Every site branch, read with the git CLI.
	short := rollout.Short(commit)
	order := map[string]int{"canary": 0, "eu": 1, "fleet": 2}
	for _, s := range sites {
		promotion := "Promote " + short + " to " + s + ": " + subject
		var want []string
		switch {
		case failedWave == "" || order[waveOf[s]] < order[failedWave]:
			want = []string{promotion}
		case waveOf[s] == failedWave:
			// Scope wave: every promoted site of the failed wave is reverted.
			want = []string{`Revert "` + promotion + `"`, promotion}
		}
		got := git(t, gs.Dir, "log", "--format=%s", gs.Seed+"..sites/"+s)
		if got != strings.Join(want, "\n") {
			t.Errorf("git log sites/%s:\n%s\nwant:\n%s", s, got, strings.Join(want, "\n"))
		}
		if len(want) == 2 {
			if tree, seedTree := git(t, gs.Dir, "rev-parse", "sites/"+s+"^{tree}"), git(t, gs.Dir, "rev-parse", gs.Seed+"^{tree}"); tree != seedTree {
				t.Errorf("sites/%s: tree %s after the revert, want the tree before the promotion %s", s, tree, seedTree)
			}
		}
	}
	return crashes, inRevert, int(gs.Lost.Load())
}
