// Package gittest helps tests drive the real git CLI: a fixed identity and no user or system
// configuration, so tests behave the same on any machine, and commits pushed over HTTP the way
// a person would push them.
package gittest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
