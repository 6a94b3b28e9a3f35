package gitops

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// promoteRich makes a source commit that modifies, adds, deletes and
// chmods files, and promotes it to ams-1 (and fra-1) with rollout r1.
func promoteRich(t *testing.T, f *fleet, r *Repo, sites ...string) (src string, changes []Change) {
	t.Helper()
	src = f.commitFunc(t, "main", "Rework apps", func(dir string) {
		write := func(p, c string, mode os.FileMode) {
			full := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), mode); err != nil {
				t.Fatal(err)
			}
		}
		write("apps/web/deploy.yaml", "image: web:2\n", 0o644)
		write("apps/cache/deploy.yaml", "image: redis:7\n", 0o644)
		write("apps/cache/init.sh", "#!/bin/sh\n", 0o755)
		run(t, dir, "rm", "--quiet", "apps/api/deploy.yaml")
		run(t, dir, "update-index", "--chmod=+x", "clusters/ams-1/ks.yaml")
	})
	changes, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets(sites...)})
	if err != nil {
		t.Fatal(err)
	}
	return src, changes
}

// cliRevertTree is the tree `git revert --no-edit p` gives on top of head.
func cliRevertTree(t *testing.T, f *fleet, head, p string) string {
	t.Helper()
	dir := f.clone(t)
	run(t, dir, "checkout", "--quiet", "--detach", head)
	run(t, dir, "revert", "--no-edit", p)
	return run(t, dir, "rev-parse", "HEAD^{tree}")
}

// TestRevertHead: reverting the head promotion gives the tree and message
// of `git revert`, with the rollout and reason as trailers.
func TestRevertHead(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	r := f.open(t)
	_, prom := promoteRich(t, f, r, "ams-1")
	p := prom[0].Commit

	got, err := r.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "error-rate 0.2 > 0.01\non ams-1", Targets: targets("ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	c := got[0]
	if !c.Created || c.Previous != p || f.head(t, "sites/ams-1") != c.Commit {
		t.Fatalf("change = %+v", c)
	}
	if got, want := run(t, f.dir, "rev-parse", c.Commit+"^{tree}"), cliRevertTree(t, f, p, p); got != want {
		t.Errorf("revert tree %s, git revert gives %s", got, want)
	}
	if got, want := run(t, f.dir, "rev-parse", c.Commit+"^{tree}"), run(t, f.dir, "rev-parse", f.source+"^{tree}"); got != want {
		t.Errorf("revert tree %s, want the tree before the promotion %s", got, want)
	}
	if got := run(t, f.dir, "rev-parse", c.Commit+"^"); got != p {
		t.Errorf("parent %s, want %s", got, p)
	}
	msg := run(t, f.dir, "log", "-1", "--format=%B", c.Commit)
	subject := run(t, f.dir, "log", "-1", "--format=%s", p)
	want := "Revert \"" + subject + "\"\n\nThis reverts commit " + p + ".\n\n" +
		"Fleetwave-Rollout: r1\nFleetwave-Reason: error-rate 0.2 > 0.01 on ams-1"
	if diff := cmp.Diff(want, msg); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	cmd := exec.Command("git", "interpret-trailers", "--parse")
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("Fleetwave-Rollout: r1\nFleetwave-Reason: error-rate 0.2 > 0.01 on ams-1\n", string(out)); diff != "" {
		t.Errorf("interpret-trailers (-want +got):\n%s", diff)
	}
}

// TestRevertAfterLaterCommit: the promotion is no longer the head (an
// unrelated file changed since); the revert undoes only the promotion's
// changes, exactly like `git revert`.
func TestRevertAfterLaterCommit(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	r := f.open(t)
	_, prom := promoteRich(t, f, r, "ams-1")
	p := prom[0].Commit
	later := f.commitOn(t, "sites/ams-1", "Tune ams-1", map[string]string{
		"clusters/ams-1/extra.yaml": "replicas: 3\n",
		"fleetwave.yaml":            "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\n# tuned\n",
	})

	got, err := r.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "bad", Targets: targets("ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	c := got[0]
	if !c.Created || c.Previous != later {
		t.Fatalf("change = %+v", c)
	}
	if got := run(t, f.dir, "rev-parse", c.Commit+"^"); got != later {
		t.Errorf("parent %s, want %s", got, later)
	}
	if got, want := run(t, f.dir, "rev-parse", c.Commit+"^{tree}"), cliRevertTree(t, f, later, p); got != want {
		t.Errorf("revert tree %s, git revert gives %s", got, want)
	}
	f.fsck(t)
}

// TestRevertConflict: a later commit changed a file the promotion changed on
// ams-1, and nyc-9's branch is gone. Neither blocks the others: fra-1 is
// reverted, and ams-1 and nyc-9 get no commit and a Problem that names the
// path and says how to fix it by hand.
func TestRevertConflict(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1", "sites/fra-1")
	r := f.open(t)
	promoteRich(t, f, r, "fra-1", "ams-1")
	f.commitOn(t, "sites/ams-1", "Pin web", map[string]string{"apps/web/deploy.yaml": "image: web:2-pinned\n"})
	ams, fra := f.head(t, "sites/ams-1"), f.head(t, "sites/fra-1")

	got, err := r.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "bad", Targets: targets("fra-1", "ams-1", "nyc-9")})
	if err != nil {
		t.Fatalf("Revert: %v; one bad site must not block the others", err)
	}
	if len(got) != 3 || !got[0].Created || got[0].Problem != "" {
		t.Fatalf("fra-1: %+v, want it reverted", got)
	}
	promotion := run(t, f.dir, "rev-parse", ams+"^")
	if c := got[1]; c.Created || c.Ours != "" || c.Commit != ams || !strings.Contains(c.Problem, "apps/web/deploy.yaml") ||
		!strings.Contains(c.Problem, "git switch sites/ams-1 && git revert "+promotion) {
		t.Errorf("ams-1: %+v, want no commit and a problem naming the path and the commands", c)
	}
	if c := got[2]; c.Created || !strings.Contains(c.Problem, "sites/nyc-9 does not exist") {
		t.Errorf("nyc-9: %+v, want a problem saying its branch is gone", c)
	}
	if f.head(t, "sites/ams-1") != ams {
		t.Error("ams-1 was written")
	}
	if head := f.head(t, "sites/fra-1"); head == fra || head != got[0].Commit {
		t.Errorf("sites/fra-1 = %s, want the revert %s", head, got[0].Commit)
	}
	// The CLI agrees that this is a conflict, and the hand fix it names starts the same way.
	dir := f.clone(t)
	run(t, dir, "checkout", "--quiet", "--detach", ams)
	if _, err := gitErr(dir, "revert", "--no-edit", ams+"^"); err == nil {
		t.Error("git revert succeeded where we report a conflict")
	}
}

// TestRevertIdempotent: a second Revert, and a Revert of a rollout that
// promoted nothing, write nothing.
func TestRevertIdempotent(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1", "sites/fra-1")
	r := f.open(t)
	promoteRich(t, f, r, "ams-1")
	req := RevertRequest{Rollout: "r1", Reason: "bad", Targets: targets("ams-1", "fra-1")}
	first, err := r.Revert(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if !first[0].Created || first[1].Created {
		t.Fatalf("first Revert = %+v, want ams-1 reverted and fra-1 (never promoted) untouched", first)
	}
	pushes := f.pushes.Load()
	second, err := r.Revert(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Ours != first[0].Commit || first[1].Ours != "" {
		t.Errorf("first Revert: Ours = %q, %q; want the revert commit and nothing", first[0].Ours, first[1].Ours)
	}
	// A retry after a lost response finds the revert it wrote.
	want := []Change{
		{Site: "ams-1", Branch: "sites/ams-1", Commit: first[0].Commit, Previous: first[0].Commit, Ours: first[0].Commit},
		{Site: "fra-1", Branch: "sites/fra-1", Commit: f.source, Previous: f.source},
	}
	if diff := cmp.Diff(want, second); diff != "" {
		t.Errorf("second Revert (-want +got):\n%s", diff)
	}
	if f.pushes.Load() != pushes || f.head(t, "sites/ams-1") != first[0].Commit {
		t.Error("second Revert wrote")
	}
	other, err := r.Revert(ctxT(t), RevertRequest{Rollout: "r-other", Reason: "x", Targets: targets("ams-1")})
	if err != nil || other[0].Created {
		t.Errorf("Revert of another rollout = %+v, %v; want no-op", other, err)
	}
}

// TestLostPushResponses: the git server applies each push and then answers 502, as a proxy
// failing after the server accepted it would. The write fails, and its retry finds what the
// lost push wrote: it reports the commit as this rollout's (Ours), writes nothing twice, and
// the revert of it is found the same way. The real git CLI checks the branch's history.
func TestLostPushResponses(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	req := PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1")}

	f.srv.LoseResponses.Store(1)
	if _, err := r.Promote(ctxT(t), req); err == nil {
		t.Fatal("Promote succeeded although the push response was lost")
	}
	promotion := f.head(t, "sites/ams-1")
	if promotion == f.source {
		t.Fatal("the push was not applied")
	}
	retry, err := r.Promote(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if c := retry[0]; c.Created || c.Ours != promotion || c.RolloutCommit() != promotion {
		t.Errorf("retried Promote = %+v, want the lost push's promotion %s found", c, promotion)
	}

	f.srv.LoseResponses.Store(1)
	rreq := RevertRequest{Rollout: "r1", Reason: "site ams-1 degraded", Targets: targets("ams-1")}
	if _, err := r.Revert(ctxT(t), rreq); err == nil {
		t.Fatal("Revert succeeded although the push response was lost")
	}
	revert := f.head(t, "sites/ams-1")
	again, err := r.Revert(ctxT(t), rreq)
	if err != nil {
		t.Fatal(err)
	}
	if c := again[0]; c.Created || c.Ours != revert || revert == promotion {
		t.Errorf("retried Revert = %+v, want the lost push's revert %s found", c, revert)
	}
	if f.srv.Lost.Load() != 2 {
		t.Errorf("%d responses lost, want 2", f.srv.Lost.Load())
	}
	// One promotion and one revert, nothing else, and the revert restores the tree.
	log := run(t, f.dir, "log", "--format=%s", f.source+"..sites/ams-1")
	want := "Revert \"Promote " + src[:7] + " to ams-1: Bump web\"\nPromote " + src[:7] + " to ams-1: Bump web"
	if log != want {
		t.Errorf("git log sites/ams-1:\n%s\nwant:\n%s", log, want)
	}
	if a, b := run(t, f.dir, "rev-parse", "sites/ams-1^{tree}"), run(t, f.dir, "rev-parse", f.source+"^{tree}"); a != b {
		t.Errorf("tree after the revert %s, want the tree before the promotion %s", a, b)
	}
}
