package gittest

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fleetwave/fleetwave/gitops/gitserver"
)

// Env is the environment tests run git with: a fixed identity, no user or system
// configuration (HOME may have neither), no prompts.
var Env = []string{
	"GIT_AUTHOR_NAME=Test Author",
	"GIT_AUTHOR_EMAIL=author@example.com",
	"GIT_COMMITTER_NAME=Test Author",
	"GIT_COMMITTER_EMAIL=author@example.com",
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_CONFIG_GLOBAL=" + os.DevNull,
	"GIT_TERMINAL_PROMPT=0",
}

// Git runs the git CLI in dir and returns its trimmed standard output; it fails the test on an
// error, with git's standard error.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := GitErr(dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// GitErr is Git returning the error, which carries git's standard error.
func GitErr(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), Env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &Error{Err: err, Stderr: stderr.String()}
	}
	return strings.TrimSpace(string(out)), nil
}

// Error is a failed git command with what it printed on standard error.
type Error struct {
	Err    error
	Stderr string
}

// Error returns the exit status and git's message.
func (e *Error) Error() string { return e.Err.Error() + ": " + strings.TrimSpace(e.Stderr) }

// Unwrap returns the exec error.
func (e *Error) Unwrap() error { return e.Err }

// CommitOn commits files (slash-separated path → content; "" deletes the file) on top of branch
// of the repository at url, pushes it there, and returns the new commit.
func CommitOn(t testing.TB, url, branch, msg string, files map[string]string) string {
	t.Helper()
	return CommitFunc(t, url, branch, msg, func(dir string) {
		for p, c := range files {
			if c == "" {
				Git(t, dir, "rm", "--quiet", p)
				continue
			}
			full := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// CommitFunc commits what edit does to a checkout of branch of the repository at url, pushes it
// there, and returns the new commit.
func CommitFunc(t testing.TB, url, branch, msg string, edit func(dir string)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fleetwave-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	Git(t, dir, "init", "--quiet")
	Git(t, dir, "fetch", "--quiet", url, branch)
	Git(t, dir, "checkout", "--quiet", "-B", "work", "FETCH_HEAD")
	edit(dir)
	Git(t, dir, "add", "--all")
	Git(t, dir, "commit", "--quiet", "-m", msg)
	Git(t, dir, "push", "--quiet", url, "HEAD:refs/heads/"+branch)
	return Git(t, dir, "rev-parse", "HEAD")
}

// Server is a bare repository served over git smart HTTP by gitserver on 127.0.0.1. It stops
// at the end of the test that made it.
type Server struct {
	URL  string // clone URL of the repository, e.g. http://127.0.0.1:41234/fleet.git
	Dir  string // the bare repository
	Seed string // the seeded commit, on main and on each branch given to NewServer
	Addr string // host:port the server listens on; Restart listens there again

	// Pushes counts the push requests the server processed (answered with HTTP 200), whether
	// or not they updated a ref.
	Pushes atomic.Int32
	// LoseResponses is how many of the next processed pushes are answered 502 Bad Gateway
	// although they were applied (a proxy failing after the server accepted the push).
	LoseResponses atomic.Int32
	// Lost counts the push responses lost that way.
	Lost atomic.Int32
	// RefusePushes makes the server answer every push 503 Service Unavailable without
	// applying it, while fetches go on: an overloaded server, or a proxy refusing writes.
	RefusePushes atomic.Bool
	// Refused counts the pushes refused that way.
	Refused atomic.Int32

	srv  *gitserver.Server
	base string // the URL path of the repository, "/<name>.git"
	stop func()
}

// NewServer creates the bare repository name in a temporary directory, seeds it with
// gitserver.Seed (files, slash-separated path → content, committed on main, and each of
// branches pointed at the same commit) and serves it on a free port of 127.0.0.1 until the
// test ends.
func NewServer(t testing.TB, name string, files map[string]string, branches ...string) *Server {
	t.Helper()
	s := &Server{base: "/" + name + ".git"}
	var err error
	s.srv, err = gitserver.New(t.TempDir(), gitserver.WithPushHook(func(string) { s.Pushes.Add(1) }),
		gitserver.WithPushFault(func(string) int {
			for {
				n := s.LoseResponses.Load()
				if n <= 0 {
					return 0
				}
				if s.LoseResponses.CompareAndSwap(n, n-1) {
					s.Lost.Add(1)
					return http.StatusBadGateway
				}
			}
		}),
		gitserver.WithPushGate(func(string, *http.Request) int {
			if s.RefusePushes.Load() {
				s.Refused.Add(1)
				return http.StatusServiceUnavailable
			}
			return 0
		}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir, err = s.srv.Init(name); err != nil {
		t.Fatal(err)
	}
	if s.Seed, err = gitserver.Seed(s.Dir, files, branches...); err != nil {
		t.Fatal(err)
	}
	s.listen(t, "127.0.0.1:0")
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) listen(t testing.TB, addr string) {
	t.Helper()
	base, stop, err := gitserver.Listen(addr, s.srv)
	if err != nil {
		t.Fatal(err)
	}
	s.stop, s.URL, s.Addr = stop, base+s.base, strings.TrimPrefix(base, "http://")
}

// Stop stops serving, so that clients get "connection refused" until Restart. A stopped
// Server can still be changed through Dir.
func (s *Server) Stop() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// Restart serves the repository again, on the same address, after Stop.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.listen(t, s.Addr)
}

// CommitOn commits files (content "" deletes the file) on top of branch of the served
// repository with the git CLI, pushes it over HTTP, and returns the new commit.
func (s *Server) CommitOn(t testing.TB, branch, msg string, files map[string]string) string {
	t.Helper()
	return CommitOn(t, s.URL, branch, msg, files)
}

// CommitFunc commits what edit does to a checkout of branch of the served repository, pushes
// it over HTTP, and returns the new commit.
func (s *Server) CommitFunc(t testing.TB, branch, msg string, edit func(dir string)) string {
	t.Helper()
	return CommitFunc(t, s.URL, branch, msg, edit)
}

// Head returns the commit branch (without "refs/heads/") points at in the served repository,
// or "" if there is no such branch.
func (s *Server) Head(t testing.TB, branch string) string {
	t.Helper()
	out, err := GitErr(s.Dir, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
	if err != nil {
		return ""
	}
	return out
}
