package gitserver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// seedEnv makes commits reproducible and independent of the user's git
// configuration, which may have no identity at all.
var seedEnv = []string{
	"GIT_AUTHOR_NAME=fleetwave seed",
	"GIT_AUTHOR_EMAIL=seed@fleetwave.invalid",
	"GIT_COMMITTER_NAME=fleetwave seed",
	"GIT_COMMITTER_EMAIL=seed@fleetwave.invalid",
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_CONFIG_GLOBAL=" + os.DevNull,
	"GIT_TERMINAL_PROMPT=0",
}

// Seed commits files (slash-separated path → content) with the git CLI on
// top of the main branch of the bare repository dir (an empty repository
// gets a root commit), pushes it to main, and points each of branches at the
// same commit. It returns the commit's sha. Branches that already exist must
// be ancestors of the new commit. Seed writes to dir directly, so a
// Server's push hook does not fire.
func Seed(dir string, files map[string]string, branches ...string) (string, error) {
	return Commit(dir, "Seed fleet repo", files, branches...)
}

// Commit is Seed with a commit message of the caller's choice.
func Commit(dir, message string, files map[string]string, branches ...string) (string, error) {
	work, err := os.MkdirTemp("", "fleetwave-seed-")
	if err != nil {
		return "", fmt.Errorf("seed %s: %w", dir, err)
	}
	defer os.RemoveAll(work)

	run := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), seedEnv...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return strings.TrimSpace(string(out)), nil
	}
	fail := func(err error) (string, error) { return "", fmt.Errorf("seed %s: %w", dir, err) }

	if _, err := run("init", "--quiet", "--initial-branch=main"); err != nil {
		return fail(err)
	}
	if _, err := run("fetch", "--quiet", dir, "main"); err == nil {
		if _, err := run("reset", "--quiet", "--hard", "FETCH_HEAD"); err != nil {
			return fail(err)
		}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if strings.Contains(p, "..") || filepath.IsAbs(p) {
			return fail(fmt.Errorf("invalid path %q", p))
		}
		full := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(full, []byte(files[p]), 0o644); err != nil {
			return fail(err)
		}
	}
	if _, err := run("add", "--all"); err != nil {
		return fail(err)
	}
	if _, err := run("-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty", "-m", message); err != nil {
		return fail(err)
	}
	sha, err := run("rev-parse", "HEAD")
	if err != nil {
		return fail(err)
	}
	args := []string{"push", "--quiet", "--atomic", dir, "HEAD:refs/heads/main"}
	for _, b := range branches {
		args = append(args, "HEAD:refs/heads/"+strings.TrimPrefix(b, "refs/heads/"))
	}
	if _, err := run(args...); err != nil {
		return fail(err)
	}
	return sha, nil
}
