package gitops

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
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
	ts := make([]Target, n)
	branches := make([]string, n)
	for i := range ts {
		ts[i] = Target{Site: fmt.Sprintf("s%05d", i), Branch: fmt.Sprintf("sites/s%05d", i)}
		branches[i] = ts[i].Branch
	}
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
