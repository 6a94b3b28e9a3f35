package gitops

import (
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPromote checks a promotion commit with the git CLI: the source tree,
// the previous head as only parent, the message, and trailers that
// `git interpret-trailers --parse` reads.
func TestPromote(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src := f.commitOn(t, "main", "Bump web to 2", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)

	changes, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "rollout/fleet/abc", Wave: "canary", Source: src, Targets: targets("ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	c := changes[0]
	if !c.Created || c.Previous != f.source || c.Site != "ams-1" || c.Branch != "sites/ams-1" {
		t.Fatalf("change = %+v", c)
	}
	if got := f.head(t, "sites/ams-1"); got != c.Commit {
		t.Fatalf("sites/ams-1 = %s, want %s", got, c.Commit)
	}
	if got, want := run(t, f.dir, "rev-parse", c.Commit+"^{tree}"), run(t, f.dir, "rev-parse", src+"^{tree}"); got != want {
		t.Errorf("promotion tree %s, source tree %s", got, want)
	}
	if got := run(t, f.dir, "rev-list", "--parents", "-n1", c.Commit); got != c.Commit+" "+f.source {
		t.Errorf("parents: %s", got)
	}
	msg := run(t, f.dir, "log", "-1", "--format=%B", c.Commit)
	want := "Promote " + src[:7] + " to ams-1: Bump web to 2\n\n" +
		"Promote commit " + src + " to site ams-1 in wave canary.\n\n" +
		"Fleetwave-Rollout: rollout/fleet/abc\n" +
		"Fleetwave-Source: " + src + "\n" +
		"Fleetwave-Wave: canary"
	if diff := cmp.Diff(want, msg); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	cmd := exec.Command("git", "interpret-trailers", "--parse")
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	wantTrailers := "Fleetwave-Rollout: rollout/fleet/abc\nFleetwave-Source: " + src + "\nFleetwave-Wave: canary\n"
	if diff := cmp.Diff(wantTrailers, string(out)); diff != "" {
		t.Errorf("interpret-trailers (-want +got):\n%s", diff)
	}
	if got := run(t, f.dir, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%at", c.Commit); got != "Fleet Wave <fw@example.com>|Fleet Wave <fw@example.com>|1740830400" {
		t.Errorf("author/committer/time: %s", got)
	}

	info, err := r.Commit(c.Commit)
	if err != nil {
		t.Fatal(err)
	}
	wantInfo := map[string]string{TrailerRollout: "rollout/fleet/abc", TrailerSource: src, TrailerWave: "canary"}
	if diff := cmp.Diff(wantInfo, info.Trailers); diff != "" {
		t.Errorf("CommitInfo.Trailers (-want +got):\n%s", diff)
	}
	if info.Subject != "Promote "+src[:7]+" to ams-1: Bump web to 2" || info.Author != "Fleet Wave <fw@example.com>" {
		t.Errorf("CommitInfo = %+v", info)
	}
	if b, _ := r.Branch("sites/ams-1"); b != c.Commit {
		t.Errorf("Branch after push = %s, want %s", b, c.Commit)
	}
	f.fsck(t)
}

// TestPromoteIdempotent: a retried Promote writes nothing, even after an
// unrelated commit landed on the site branch, and the head's tree already
// equal to the source tree is a no-op too.
func TestPromoteIdempotent(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1", "sites/fra-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	req := PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1")}

	first, err := r.Promote(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	pushes := f.pushes.Load()
	second, err := r.Promote(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Ours != first[0].Commit {
		t.Errorf("first Promote: Ours = %q, want the commit it wrote %s", first[0].Ours, first[0].Commit)
	}
	// A retry after a lost response finds the promotion: written by someone else's attempt, it
	// is still this rollout's, so it must be reverted if the site degrades.
	want := Change{Site: "ams-1", Branch: "sites/ams-1", Commit: first[0].Commit, Previous: first[0].Commit, Ours: first[0].Commit}
	if diff := cmp.Diff([]Change{want}, second); diff != "" {
		t.Errorf("second Promote (-want +got):\n%s", diff)
	}
	if f.pushes.Load() != pushes {
		t.Error("second Promote pushed")
	}

	// An operator commit on top (another file): still promoted by r1.
	moved := f.commitOn(t, "sites/ams-1", "Hotfix", map[string]string{"clusters/ams-1/extra.yaml": "x: 1\n"})
	third, err := r.Promote(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if third[0].Created || third[0].Commit != moved || third[0].Ours != first[0].Commit || f.head(t, "sites/ams-1") != moved {
		t.Errorf("Promote after hotfix = %+v, want no-op at %s finding promotion %s", third[0], moved, first[0].Commit)
	}

	// Site already at the source's tree (branch created from main): no-op.
	f.commitOn(t, "sites/fra-1", "Same as main", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	fra := f.head(t, "sites/fra-1")
	got, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("fra-1")})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Created || got[0].Commit != fra || got[0].Ours != "" || f.head(t, "sites/fra-1") != fra {
		t.Errorf("Promote at source tree = %+v, want no-op at %s with nothing of r1's", got[0], fra)
	}
}

// TestWritesOnAStaleCopy: a writer plans its first attempt on its copy without fetching. A
// second worker whose copy predates the first worker's promotion and revert must neither
// promote twice (its push is refused: the branch moved) nor skip the revert (a plan that finds
// nothing to revert is made again on a fresh fetch).
func TestWritesOnAStaleCopy(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	a, b := f.open(t), f.open(t) // two workers, b's copy taken now
	req := PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1")}
	first, err := a.Promote(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Promote(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Created || again[0].Ours != first[0].Commit || f.head(t, "sites/ams-1") != first[0].Commit {
		t.Errorf("stale worker's Promote = %+v, want no new commit, finding %s", again[0], first[0].Commit)
	}

	c := f.open(t) // a third worker, whose copy has the promotion
	if _, err := a.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "bad", Targets: targets("ams-1")}); err != nil {
		t.Fatal(err)
	}
	reverted := f.head(t, "sites/ams-1")
	got, err := c.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "bad", Targets: targets("ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Created || f.head(t, "sites/ams-1") != reverted {
		t.Errorf("stale worker's Revert = %+v, want none written over the revert %s", got[0], reverted)
	}
	if n := run(t, f.dir, "rev-list", "--count", "sites/ams-1"); n != "3" {
		t.Errorf("sites/ams-1 has %s commits, want 3 (seed, promotion, revert)", n)
	}

	// A copy without the promotion at all: its plan finds nothing to revert, so it fetches.
	d := f.open(t)
	if _, err := a.Promote(ctxT(t), PromoteRequest{Rollout: "r2", Wave: "canary", Source: src, Targets: targets("ams-1")}); err != nil {
		t.Fatal(err)
	}
	got, err = d.Revert(ctxT(t), RevertRequest{Rollout: "r2", Reason: "bad", Targets: targets("ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Created || f.head(t, "sites/ams-1") != got[0].Commit {
		t.Errorf("Revert by a worker that had not seen r2's promotion = %+v, want a revert written", got[0])
	}
	f.fsck(t)
}

// TestPromoteAgainAfterRevert: a reverted promotion no longer counts, so the
// same request writes a new promotion commit.
func TestPromoteAgainAfterRevert(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	req := PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1")}
	if _, err := r.Promote(ctxT(t), req); err != nil {
		t.Fatal(err)
	}
	rev, err := r.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "manual", Targets: targets("ams-1")})
	if err != nil || !rev[0].Created {
		t.Fatalf("Revert = %+v, %v", rev, err)
	}
	again, err := r.Promote(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Created || again[0].Previous != rev[0].Commit {
		t.Errorf("Promote after revert = %+v, want a new commit on %s", again[0], rev[0].Commit)
	}
	if got, want := run(t, f.dir, "rev-parse", again[0].Commit+"^{tree}"), run(t, f.dir, "rev-parse", src+"^{tree}"); got != want {
		t.Errorf("tree %s, want %s", got, want)
	}
}

// TestPromoteSupersededRollout: a later rollout's commit ends the
// idempotency walk, so rollout r1 promoting the same source again after r2
// is judged by the tree alone.
func TestPromoteSupersededRollout(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src1 := f.commitOn(t, "main", "web 2", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	src2 := f.commitOn(t, "main", "web 3", map[string]string{"apps/web/deploy.yaml": "image: web:3\n"})
	r := f.open(t)
	if _, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "w", Source: src1, Targets: targets("ams-1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r2", Wave: "w", Source: src2, Targets: targets("ams-1")}); err != nil {
		t.Fatal(err)
	}
	got, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "w", Source: src1, Targets: targets("ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Created {
		t.Errorf("r1 after r2 = %+v, want a new promotion commit", got[0])
	}
}

// TestPromoteMissingSiteBranch: one missing site branch fails the whole call
// with ErrBranchNotFound and an actionable message; no branch is written.
func TestPromoteMissingSiteBranch(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	pushes := f.pushes.Load()
	_, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1", "fra-1")})
	if !errors.Is(err, ErrBranchNotFound) {
		t.Fatalf("err = %v, want ErrBranchNotFound", err)
	}
	if want := "site branch sites/fra-1 does not exist; create it from the source branch first: git push origin main:sites/fra-1"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to contain %q", err, want)
	}
	if f.head(t, "sites/ams-1") != f.source || f.head(t, "sites/fra-1") != "" || f.pushes.Load() != pushes {
		t.Error("a branch was written")
	}
	if _, err := r.Branch("sites/fra-1"); !errors.Is(err, ErrBranchNotFound) || !strings.Contains(err.Error(), "sites/fra-1") {
		t.Errorf("Branch: %v", err)
	}
}

// TestPromoteMultiBranchAtomic: three targets, one push, atomic.
func TestPromoteMultiBranchAtomic(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/a", "sites/b", "sites/c")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	pushes := f.pushes.Load()
	changes, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "all", Source: src, Targets: targets("c", "a", "b")})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 || changes[0].Site != "c" || changes[1].Site != "a" || changes[2].Site != "b" {
		t.Fatalf("changes not in target order: %+v", changes)
	}
	for _, c := range changes {
		if !c.Created || f.head(t, c.Branch) != c.Commit {
			t.Errorf("%s: %+v, head %s", c.Branch, c, f.head(t, c.Branch))
		}
	}
	if n := f.pushes.Load() - pushes; n != 1 {
		t.Errorf("%d push requests, want 1", n)
	}
	if !r.lastPushAtomic {
		t.Error("push was not atomic although git http-backend advertises atomic")
	}
	f.fsck(t)
}

// TestPromoteAtomicRejected: when the server refuses one branch (an update
// hook here), the atomic push updates none of them, and the error is
// returned as is (not a non-fast-forward, so no retry).
func TestPromoteAtomicRejected(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/a", "sites/b", "sites/c")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	hook := "#!/bin/sh\n[ \"$1\" = refs/heads/sites/b ] && { echo frozen >&2; exit 1; }\nexit 0\n"
	writeHook(t, f.dir, "update", hook)
	r := f.open(t)
	pushes := f.pushes.Load()
	_, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "all", Source: src, Targets: targets("a", "b", "c")})
	if err == nil || errors.Is(err, ErrNonFastForward) {
		t.Fatalf("err = %v, want a rejection that is not ErrNonFastForward", err)
	}
	t.Logf("rejection: %v", err)
	for _, b := range []string{"sites/a", "sites/b", "sites/c"} {
		if f.head(t, b) != f.source {
			t.Errorf("%s was updated by a failed atomic push", b)
		}
	}
	if n := f.pushes.Load() - pushes; n != 1 {
		t.Errorf("%d push requests, want 1 (no retry)", n)
	}
}

// TestPromoteConcurrentWriter: a commit pushed to the site branch between
// our fetch and our push makes the push fail; Promote fetches and builds on
// that commit instead of overwriting it.
func TestPromoteConcurrentWriter(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1", "sites/fra-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	var concurrent string
	r.beforePush = func(attempt int) {
		if attempt == 1 {
			concurrent = f.commitOn(t, "sites/ams-1", "Operator hotfix", map[string]string{"clusters/ams-1/hotfix.yaml": "x: 1\n"})
		}
	}
	changes, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "w", Source: src, Targets: targets("ams-1", "fra-1")})
	if err != nil {
		t.Fatal(err)
	}
	ams := changes[0]
	if ams.Previous != concurrent {
		t.Errorf("Previous = %s, want the concurrent commit %s", ams.Previous, concurrent)
	}
	if got := run(t, f.dir, "rev-parse", ams.Commit+"^"); got != concurrent {
		t.Errorf("parent of promotion = %s, want the concurrent commit %s", got, concurrent)
	}
	if got, want := run(t, f.dir, "rev-parse", ams.Commit+"^{tree}"), run(t, f.dir, "rev-parse", src+"^{tree}"); got != want {
		t.Errorf("tree %s, want source tree %s", got, want)
	}
	if f.head(t, "sites/ams-1") != ams.Commit || f.head(t, "sites/fra-1") != changes[1].Commit {
		t.Error("branches not at the returned commits")
	}
	// The commit of the first attempt must not have reached the remote.
	if n := run(t, f.dir, "rev-list", "--count", "sites/fra-1"); n != "2" {
		t.Errorf("sites/fra-1 has %s commits, want 2 (seed + one promotion)", n)
	}
}

// TestPromoteGivesUp: a branch that moves before every push exhausts
// MaxAttempts and returns ErrNonFastForward.
func TestPromoteGivesUp(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t, WithMaxAttempts(2))
	n := 0
	r.beforePush = func(int) {
		n++
		f.commitOn(t, "sites/ams-1", "busy", map[string]string{"busy.txt": strings.Repeat("x", n)})
	}
	_, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "w", Source: src, Targets: targets("ams-1")})
	if !errors.Is(err, ErrNonFastForward) || n != 2 {
		t.Fatalf("err = %v after %d attempts, want ErrNonFastForward after 2", err, n)
	}
}

// TestPromoteServerSideRace: the branch moves after the server advertised
// it but before it updates it (a pre-receive hook moves it), so the server,
// not go-git, refuses the stale update; Promote maps that to a retry.
func TestPromoteServerSideRace(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1", "sites/fra-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	side := f.commitOn(t, "sites/ams-1", "Operator hotfix", map[string]string{"hotfix.yaml": "x: 1\n"})
	run(t, f.dir, "update-ref", "refs/heads/sites/ams-1", f.source)
	writeHook(t, f.dir, "pre-receive", "#!/bin/sh\n"+
		"[ -e \"$GIT_DIR/raced\" ] && exit 0\n"+
		"touch \"$GIT_DIR/raced\"\n"+
		"env -u GIT_QUARANTINE_PATH git update-ref refs/heads/sites/ams-1 "+side+" || exit 1\n"+
		"exit 0\n")
	var buf strings.Builder
	r := f.open(t, WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	changes, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "w", Source: src, Targets: targets("fra-1", "ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("log:\n%s", buf.String())
	if !strings.Contains(buf.String(), "retrying") {
		t.Error("no retry happened")
	}
	if got := run(t, f.dir, "rev-parse", changes[1].Commit+"^"); got != side {
		t.Errorf("parent of ams-1 promotion = %s, want the hotfix %s", got, side)
	}
	if n := run(t, f.dir, "rev-list", "--count", "sites/fra-1"); n != "2" {
		t.Errorf("sites/fra-1 has %s commits, want 2: the atomic push of the first attempt must have failed as a whole", n)
	}
}

// TestLanded: after a cancelled or failed promotion, Landed reads which branches got it
// (through another clone, as a retry on another worker would), writing nothing.
func TestLanded(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1", "sites/fra-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	req := PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1", "fra-1", "gone-1")}
	pushed, err := f.open(t).Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	hotfix := f.commitOn(t, "sites/ams-1", "Hotfix", map[string]string{"clusters/ams-1/extra.yaml": "x: 1\n"})
	reader := f.open(t)
	pushes := f.pushes.Load()
	got, err := reader.Landed(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{Site: "ams-1", Branch: "sites/ams-1", Commit: hotfix, Previous: hotfix, Ours: pushed[0].Commit}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Landed (-want +got):\n%s", diff)
	}
	if f.pushes.Load() != pushes {
		t.Error("Landed pushed")
	}
	// Reverted, it no longer counts.
	if _, err := reader.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "manual", Targets: targets("ams-1")}); err != nil {
		t.Fatal(err)
	}
	if got, err := reader.Landed(ctxT(t), req); err != nil || len(got) != 0 {
		t.Errorf("Landed after the revert = %+v, %v; want nothing", got, err)
	}
}

// TestPromoteSkipsMissingBranches: with SkipMissing, a target whose branch does not exist is a
// Change with a Problem saying how to create it, and the others are pushed (the git CLI sees
// them); without it the whole request fails before anything is pushed.
func TestPromoteSkipsMissingBranches(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src := f.commitOn(t, "main", "Bump web to 2", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	req := PromoteRequest{Rollout: "rollout/fleet/abc", Wave: "all", Source: src, Targets: targets("nyc-9", "ams-1")}
	if _, err := r.Promote(ctxT(t), req); !errors.Is(err, ErrBranchNotFound) || f.head(t, "sites/ams-1") != f.source {
		t.Fatalf("without SkipMissing: %v, sites/ams-1 at %s", err, f.head(t, "sites/ams-1"))
	}
	req.SkipMissing = true
	changes, err := r.Promote(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].Created || !strings.Contains(changes[0].Problem, "site branch sites/nyc-9 does not exist; create it from the source branch first") ||
		!changes[1].Created || changes[1].Problem != "" {
		t.Fatalf("changes = %+v", changes)
	}
	if got, want := run(t, f.dir, "rev-parse", "sites/ams-1^{tree}"), run(t, f.dir, "rev-parse", src+"^{tree}"); got != want {
		t.Errorf("sites/ams-1 runs tree %s, want the source's %s", got, want)
	}
}
