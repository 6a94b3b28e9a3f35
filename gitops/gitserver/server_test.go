package gitserver

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), seedEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestServer: Seed, clone and push over HTTP with the git CLI, the push
// hook, atomic advertisement, and loopback-only Listen.
func TestServer(t *testing.T) {
	var mu sync.Mutex
	var pushed []string
	srv, err := New(t.TempDir(), WithPushHook(func(repo string) {
		mu.Lock()
		defer mu.Unlock()
		pushed = append(pushed, repo)
	}))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := srv.Init("org/fleet")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Init("org/fleet"); err == nil {
		t.Error("Init of an existing repo succeeded")
	}
	sha, err := Seed(dir, map[string]string{"a/b.yaml": "x: 1\n"}, "sites/one", "sites/two")
	if err != nil {
		t.Fatal(err)
	}
	sha2, err := Seed(dir, map[string]string{"c.yaml": "y: 2\n"})
	if err != nil {
		t.Fatal(err)
	}
	if parent := git(t, dir, "rev-parse", sha2+"^"); parent != sha {
		t.Errorf("second Seed commit's parent = %s, want %s", parent, sha)
	}

	if _, _, err := Listen("0.0.0.0:0", srv); err == nil {
		t.Error("Listen on 0.0.0.0 succeeded")
	}
	url, stop, err := Listen("127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	work := filepath.Join(t.TempDir(), "w")
	git(t, "", "clone", "--quiet", url+"/org/fleet.git", work)
	if got := git(t, work, "rev-parse", "origin/sites/two"); got != sha {
		t.Errorf("sites/two = %s, want %s", got, sha)
	}
	if _, err := os.Stat(filepath.Join(work, "c.yaml")); err != nil {
		t.Error(err)
	}
	if out := git(t, work, "ls-remote", url+"/org/fleet.git"); !strings.Contains(out, "refs/heads/main") {
		t.Errorf("ls-remote: %s", out)
	}
	if err := os.WriteFile(filepath.Join(work, "d.yaml"), []byte("z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, work, "add", ".")
	git(t, work, "commit", "--quiet", "-m", "d")
	git(t, work, "push", "--quiet", "--atomic", "origin", "HEAD:main", "HEAD:sites/one")
	if got, want := git(t, dir, "rev-parse", "sites/one"), git(t, work, "rev-parse", "HEAD"); got != want {
		t.Errorf("sites/one = %s after push, want %s", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pushed) != 1 || pushed[0] != "org/fleet" {
		t.Errorf("push hook calls = %q, want [org/fleet]", pushed)
	}
}

// TestSomeoneElseWrites: a push gate reads the refs a push updates and has someone else write
// to the first one first; git then rejects the push, and the other writer's commit stays.
func TestSomeoneElseWrites(t *testing.T) {
	var mu sync.Mutex
	var refs [][]string
	var srv *Server
	var err error
	srv, err = New(t.TempDir(), WithPushGate(func(repo string, req *http.Request) int {
		got, err := PushRefs(req)
		if err != nil {
			t.Error(err)
			return http.StatusBadRequest
		}
		mu.Lock()
		defer mu.Unlock()
		refs = append(refs, got)
		if len(refs) == 1 {
			if _, err := srv.WriteAsSomeoneElse(repo, got[0]); err != nil {
				t.Error(err)
			}
		}
		return 0
	}))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := srv.Init("fleet")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Seed(dir, map[string]string{"a.yaml": "x: 1\n"}, "sites/one", "sites/two"); err != nil {
		t.Fatal(err)
	}
	url, stop, err := Listen("127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	work := filepath.Join(t.TempDir(), "w")
	git(t, "", "clone", "--quiet", url+"/fleet.git", work)
	git(t, work, "commit", "--quiet", "--allow-empty", "-m", "ours")
	cmd := exec.Command("git", "push", "--atomic", "origin", "HEAD:sites/one", "HEAD:sites/two")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "rejected") {
		t.Fatalf("push with someone else writing first: %v: %s", err, out)
	}
	if got := git(t, dir, "log", "-1", "--format=%s", "sites/one"); got != "Someone else wrote here" {
		t.Errorf("sites/one head: %q", got)
	}
	git(t, work, "pull", "--quiet", "--no-rebase", "origin", "sites/one")
	git(t, work, "push", "--quiet", "--atomic", "origin", "HEAD:sites/one", "HEAD:sites/two")
	mu.Lock()
	defer mu.Unlock()
	if len(refs) != 2 || strings.Join(refs[0], " ") != "refs/heads/sites/one refs/heads/sites/two" {
		t.Errorf("refs seen by the gate: %q", refs)
	}
}
