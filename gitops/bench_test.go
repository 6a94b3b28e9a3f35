package gitops

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops/gittest"
)

// BenchmarkPromoteVsGitCLI (issue 13, P1): Promote writes a promotion commit on each of n site
// branches and pushes them in one push, to git http-backend over HTTP on 127.0.0.1. In the
// same run, the git CLI pushes n ready-made commits (one per branch, made beforehand with
// fast-import, not timed) to the same server in one atomic push. Reported: seconds per
// Promote, per CLI push, and their ratio (target: at most 0.25 at 1,000 branches, 0.5 at
// 10,000). Each iteration promotes a new source commit, so every push writes n commits.
func BenchmarkPromoteVsGitCLI(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("branches=%d", n), func(b *testing.B) { benchPromoteVsGitCLI(b, n) })
	}
}

func benchPromoteVsGitCLI(b *testing.B, n int) {
	ctx := context.Background()
	ts, branches := benchSites(n)
	srv := gittest.NewServer(b, "fleet", map[string]string{"apps/app.yaml": "version: 0\n"}, branches...)
	repo, err := Open(ctx, srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	work := filepath.Join(b.TempDir(), "cli")
	gittest.Git(b, "", "clone", "--quiet", "--bare", srv.URL, work)

	var fleetwave, cli time.Duration
	iterations := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		src := srv.CommitOn(b, "main", fmt.Sprintf("v%d", i+1), map[string]string{"apps/app.yaml": fmt.Sprintf("version: %d\n", i+1)})
		b.StartTimer()

		start := time.Now()
		if _, err := repo.Promote(ctx, PromoteRequest{Rollout: fmt.Sprintf("bench-%d", i), Wave: "all", Source: src, Targets: ts}); err != nil {
			b.Fatal(err)
		}
		fleetwave += time.Since(start)

		b.StopTimer()
		refspecs := readyMadeCommits(b, work, branches, i)
		b.StartTimer()
		start = time.Now()
		// A post buffer large enough for the whole push: git http-backend behind Go's CGI
		// handler refuses the chunked requests git sends for pushes over 1 MiB.
		push := exec.Command("git", append([]string{"-c", "http.postBuffer=1073741824", "push", "--quiet", "--atomic", srv.URL}, refspecs...)...)
		push.Dir = work
		if out, err := push.CombinedOutput(); err != nil {
			b.Fatalf("git push of %d ready-made commits: %v: %s", len(refspecs), err, out)
		}
		cli += time.Since(start)
		iterations++
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return d.Seconds() / float64(iterations) }
	b.ReportMetric(per(fleetwave), "s/promote")
	b.ReportMetric(per(cli), "s/git-push")
	b.ReportMetric(fleetwave.Seconds()/cli.Seconds(), "promote/git-push")
}

// readyMadeCommits fetches the branches into the bare clone work and makes one commit on top
// of each with git fast-import, on refs/heads/bench/<branch>; it returns the refspecs that push
// them to the branches.
func readyMadeCommits(b *testing.B, work string, branches []string, i int) []string {
	gittest.Git(b, work, "fetch", "--quiet", "origin", "+refs/heads/*:refs/heads/*")
	var stream bytes.Buffer
	refspecs := make([]string, len(branches))
	for j, br := range branches {
		content := fmt.Sprintf("cli %d\n", i)
		msg := "ready-made commit on " + br
		fmt.Fprintf(&stream, "commit refs/heads/bench/%s\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\nfrom refs/heads/%s^0\nM 100644 inline cli.txt\ndata %d\n%s\n",
			br, time.Now().Unix(), len(msg), msg, br, len(content), content)
		refspecs[j] = "refs/heads/bench/" + br + ":refs/heads/" + br
	}
	cmd := exec.Command("git", "fast-import", "--quiet", "--force")
	cmd.Dir = work
	cmd.Stdin = &stream
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("fast-import: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return refspecs
}

// BenchmarkMonthsOfRollouts (issue 25): a worker that runs for months. 50 rollouts in a row,
// each a source commit that changes 50 files of 27 KB, promoted to every one of n site branches
// in one push, to git http-backend on 127.0.0.1; once with a Repo that keeps all history (as
// before WithHistory), once with serve's bounds (ServeHistory). Reported, from the Go heap after
// a collection (what the Repo holds; the process RSS follows it at about twice): the heap after
// rollout 1, 10, 25 and 50, its growth per rollout over the last 25, the heap a fresh Open of
// the 50-rollout repository takes (start-up against deep history), and seconds per rollout.
func BenchmarkMonthsOfRollouts(b *testing.B) {
	for _, n := range []int{2000, 10000} {
		for _, h := range []struct {
			name string
			opts []Option
		}{{"all", nil}, {"kept", ServeHistory("main", 0, 0)}} {
			b.Run(fmt.Sprintf("sites=%d/history=%s", n, h.name), func(b *testing.B) { benchMonths(b, n, h.opts) })
		}
	}
}

func benchMonths(b *testing.B, n int, opts []Option) {
	const rollouts, files, size = 50, 50, 27 << 10
	ctx := context.Background()
	ts, branches := benchSites(n)
	srv := gittest.NewServer(b, "fleet", map[string]string{"apps/app.yaml": "version: 0\n"}, branches...)
	heap := func() float64 {
		runtime.GC()
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	for b.Loop() {
		base := heap()
		repo, err := Open(ctx, srv.URL, opts...)
		if err != nil {
			b.Fatal(err)
		}
		var after []float64
		var took time.Duration
		for i := 1; i <= rollouts; i++ {
			change := map[string]string{}
			for f := range files {
				change[fmt.Sprintf("apps/big/%02d.yaml", f)] = strings.Repeat(fmt.Sprintf("# rollout %d file %d\n", i, f), size)[:size]
			}
			src := srv.CommitOn(b, "main", fmt.Sprintf("v%d", i), change)
			start := time.Now()
			if _, err := repo.Promote(ctx, PromoteRequest{Rollout: fmt.Sprintf("r%d", i), Wave: "all", Source: src, Targets: ts}); err != nil {
				b.Fatal(err)
			}
			if err := repo.Refresh(ctx); err != nil {
				b.Fatal(err)
			}
			took += time.Since(start)
			after = append(after, heap()-base)
		}
		b.ReportMetric(after[0], "MiB-after-1")
		b.ReportMetric(after[9], "MiB-after-10")
		b.ReportMetric(after[24], "MiB-after-25")
		b.ReportMetric(after[49], "MiB-after-50")
		b.ReportMetric((after[49]-after[24])/25, "MiB/rollout-last-25")
		b.ReportMetric(took.Seconds()/rollouts, "s/rollout")
		b.Logf("heap after each rollout, MiB: %.0f; %+v", after, repo.History())
		runtime.KeepAlive(repo)
		repo = nil
		base = heap()
		fresh, err := Open(ctx, srv.URL, opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(heap()-base, "MiB-open")
		runtime.KeepAlive(fresh)
	}
}

// benchSites are n sites s00000… on branches sites/s00000…, and their branches.
func benchSites(n int) ([]Target, []string) {
	ts := make([]Target, n)
	branches := make([]string, n)
	for i := range ts {
		ts[i] = Target{Site: fmt.Sprintf("s%05d", i), Branch: fmt.Sprintf("sites/s%05d", i)}
		branches[i] = ts[i].Branch
	}
	return ts, branches
}
