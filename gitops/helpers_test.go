package gitops

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops/gittest"
)

// run runs the git CLI in dir and returns its trimmed stdout.
func run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return gittest.Git(t, dir, args...)
}

func gitErr(dir string, args ...string) (string, error) { return gittest.GitErr(dir, args...) }

// fleet is a served fleet repo: a bare repo behind git http-backend.
type fleet struct {
	srv    *gittest.Server
	url    string        // http URL of the repo
	dir    string        // bare repo directory
	source string        // sha of the seeded commit on main and the site branches
	pushes *atomic.Int32 // pushes the server processed
}

var siteFiles = map[string]string{
	"fleetwave.yaml":         "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\n",
	"apps/web/deploy.yaml":   "image: web:1\n",
	"apps/api/deploy.yaml":   "image: api:1\n",
	"clusters/ams-1/ks.yaml": "path: apps\n",
}

// newFleet serves a repo seeded with siteFiles on main and on each branch.
func newFleet(t *testing.T, branches ...string) *fleet {
	t.Helper()
	s := gittest.NewServer(t, "fleet", siteFiles, branches...)
	return &fleet{srv: s, url: s.URL, dir: s.Dir, source: s.Seed, pushes: &s.Pushes}
}

// fsck checks with the git CLI that the server's repository is complete: every ref reaches
// only objects it has (a push whose pack missed an object fails this).
func (f *fleet) fsck(t *testing.T) {
	t.Helper()
	run(t, f.dir, "fsck", "--full", "--strict", "--no-dangling")
}

// clone makes a working clone of the fleet repo.
func (f *fleet) clone(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clone")
	run(t, "", "clone", "--quiet", f.url, dir)
	return dir
}

// commitOn commits files (content "" deletes) on top of branch with the
// CLI, pushes over HTTP and returns the new sha.
func (f *fleet) commitOn(t testing.TB, branch, msg string, files map[string]string) string {
	t.Helper()
	return f.srv.CommitOn(t, branch, msg, files)
}

// commitFunc commits what edit does to a checkout of branch, pushes it
// over HTTP and returns the new sha.
func (f *fleet) commitFunc(t testing.TB, branch, msg string, edit func(dir string)) string {
	t.Helper()
	return f.srv.CommitFunc(t, branch, msg, edit)
}

// head returns a branch's sha in the served repo, "" if it does not exist.
func (f *fleet) head(t testing.TB, branch string) string {
	t.Helper()
	return f.srv.Head(t, branch)
}

// open opens the fleet repo with a fixed clock.
func (f *fleet) open(t *testing.T, opts ...Option) *Repo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := func() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }
	r, err := Open(ctx, f.url, append([]Option{WithClock(clock), WithAuthor("Fleet Wave", "fw@example.com")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func targets(sites ...string) []Target {
	var ts []Target
	for _, s := range sites {
		ts = append(ts, Target{Site: s, Branch: "sites/" + s})
	}
	return ts
}

func writeHook(t *testing.T, bare, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(bare, "hooks", name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}
