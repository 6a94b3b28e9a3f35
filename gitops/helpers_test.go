package gitops

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops/gitserver"
)

// gitEnv gives the git CLI an identity and no user configuration: HOME may
// have neither.
var gitEnv = []string{
	"GIT_AUTHOR_NAME=Test Author",
	"GIT_AUTHOR_EMAIL=author@example.com",
	"GIT_COMMITTER_NAME=Test Author",
	"GIT_COMMITTER_EMAIL=author@example.com",
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_CONFIG_GLOBAL=" + os.DevNull,
	"GIT_TERMINAL_PROMPT=0",
}

// git runs the git CLI in dir and returns its trimmed stdout.
func run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := gitErr(dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func gitErr(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &gitError{err: err, stderr: stderr.String()}
	}
	return strings.TrimSpace(string(out)), nil
}

type gitError struct {
	err    error
	stderr string
}

func (e *gitError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

// fleet is a served fleet repo: a bare repo behind git http-backend.
type fleet struct {
	url    string // http URL of the repo
	dir    string // bare repo directory
	source string // sha of the seeded commit on main and the site branches
	pushes atomic.Int32
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
	f := &fleet{}
	srv, err := gitserver.New(t.TempDir(), gitserver.WithPushHook(func(string) { f.pushes.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	f.dir, err = srv.Init("fleet")
	if err != nil {
		t.Fatal(err)
	}
	f.source, err = gitserver.Seed(f.dir, siteFiles, branches...)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	f.url = hs.URL + "/fleet.git"
	return f
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
	return f.commitFunc(t, branch, msg, func(dir string) {
		for p, c := range files {
			full := filepath.Join(dir, filepath.FromSlash(p))
			if c == "" {
				run(t, dir, "rm", "--quiet", p)
				continue
			}
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// commitFunc commits what edit does to a checkout of branch, pushes it
// over HTTP and returns the new sha.
func (f *fleet) commitFunc(t testing.TB, branch, msg string, edit func(dir string)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fleetwave-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	run(t, dir, "init", "--quiet")
	run(t, dir, "fetch", "--quiet", f.url, branch)
	run(t, dir, "checkout", "--quiet", "-B", "work", "FETCH_HEAD")
	edit(dir)
	run(t, dir, "add", "--all")
	run(t, dir, "commit", "--quiet", "-m", msg)
	run(t, dir, "push", "--quiet", f.url, "HEAD:refs/heads/"+branch)
	return run(t, dir, "rev-parse", "HEAD")
}

// head returns a branch's sha in the served repo, "" if it does not exist.
func (f *fleet) head(t testing.TB, branch string) string {
	t.Helper()
	out, err := gitErr(f.dir, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
	if err != nil {
		return ""
	}
	return out
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
