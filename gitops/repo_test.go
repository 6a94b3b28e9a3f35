package gitops

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetwave/fleetwave/gitops/gitserver"
)

// TestRead covers Branch, ReadFile and Commit and their sentinel errors.
func TestRead(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	r := f.open(t)

	main, err := r.Branch("main")
	if err != nil || main != f.source {
		t.Fatalf("Branch(main) = %s, %v; want %s", main, err, f.source)
	}
	b, err := r.ReadFile(f.source, "apps/web/deploy.yaml")
	if err != nil || string(b) != "image: web:1\n" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if b, err := r.ReadFile("main", "fleetwave.yaml"); err != nil || !strings.HasPrefix(string(b), "apiVersion") {
		t.Errorf("ReadFile(main) = %q, %v", b, err)
	}
	_, err = r.ReadFile(f.source, "apps/nope.yaml")
	if !errors.Is(err, ErrFileNotFound) || !strings.Contains(err.Error(), "apps/nope.yaml") || !strings.Contains(err.Error(), f.source[:7]) {
		t.Errorf("ReadFile missing: %v", err)
	}
	if _, err := r.ReadFile(f.source, "apps/web"); !errors.Is(err, ErrFileNotFound) {
		t.Errorf("ReadFile of a directory: %v", err)
	}
	if _, err := r.ReadFile(strings.Repeat("ab", 20), "fleetwave.yaml"); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("ReadFile at unknown commit: %v", err)
	}
	files, err := r.ReadDir(f.source, "apps/")
	if err != nil || len(files) == 0 || string(files["apps/web/deploy.yaml"]) != "image: web:1\n" {
		t.Errorf("ReadDir(apps) = %q, %v", files, err)
	}
	for path := range files {
		if !strings.HasPrefix(path, "apps/") {
			t.Errorf("ReadDir path %q is not under apps/", path)
		}
	}
	if files, err := r.ReadDir(f.source, ".fleetwave/policies"); err != nil || len(files) != 0 {
		t.Errorf("ReadDir of a missing directory = %v, %v; want empty", files, err)
	}
	if _, err := r.Branch("sites/nope"); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("Branch missing: %v", err)
	}
	info, err := r.Commit(f.source)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA != f.source || info.Subject != "Seed fleet repo" || info.Author != "fleetwave seed <seed@fleetwave.invalid>" || info.Trailers != nil || info.Time.IsZero() {
		t.Errorf("Commit = %+v", info)
	}
	if _, err := r.Commit("nope"); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("Commit(nope): %v", err)
	}
}

// TestRefresh sees new commits and drops deleted branches.
func TestRefresh(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1", "sites/gone")
	r := f.open(t)
	sha := f.commitOn(t, "main", "next", map[string]string{"a.txt": "a\n"})
	run(t, f.dir, "branch", "-D", "sites/gone")
	if err := r.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Branch("main"); got != sha {
		t.Errorf("main = %s, want %s", got, sha)
	}
	if _, err := r.Branch("sites/gone"); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("deleted branch: %v", err)
	}
}

// TestOpenUnreachable: the error names the url but no credentials, from a
// url with user:password and from WithToken.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Open(ctx, "http://deploy:s3cretpw@127.0.0.1:1/fleet.git")
	if err == nil {
		t.Fatal("Open of an unreachable url succeeded")
	}
	if strings.Contains(err.Error(), "s3cretpw") || !strings.Contains(err.Error(), "http://127.0.0.1:1/fleet.git") {
		t.Errorf("err = %q: want the url without credentials", err)
	}
	_, err = Open(ctx, "https://ghp_tokentokentoken@127.0.0.1:1/fleet.git", WithToken("glpat-othertoken"))
	if err == nil || strings.Contains(err.Error(), "tokentoken") || strings.Contains(err.Error(), "othertoken") {
		t.Errorf("err = %v: want an error without tokens", err)
	}
	t.Logf("error: %v", err)
}

// TestFileURL: a file:// remote works for reading and promoting.
func TestFileURL(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r, err := Open(ctxT(t), "file://"+f.dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "w", Source: src, Targets: targets("ams-1")})
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Created || f.head(t, "sites/ams-1") != got[0].Commit {
		t.Errorf("change %+v, head %s", got[0], f.head(t, "sites/ams-1"))
	}
	if !r.lastPushAtomic {
		t.Error("git-receive-pack over file:// advertises atomic, but the push was not atomic")
	}
}

func TestParseTrailers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, msg string
		want      map[string]string
	}{
		{"subject only", "Fix: a thing\n", nil},
		{"body without trailers", "Subject\n\nSome body.\n", nil},
		{"trailers", "S\n\nBody.\n\nA-B: 1\nC: two words\n", map[string]string{"A-B": "1", "C": "two words"}},
		{"mixed last paragraph", "S\n\nA: 1\nnot a trailer\n", nil},
		{"continuation", "S\n\nA: 1\n  more\nB: 2\n", map[string]string{"A": "1 more", "B": "2"}},
		{"trailing blank lines", "S\n\nA: 1\n\n\n", map[string]string{"A": "1"}},
		{"last wins", "S\n\nA: 1\nA: 2\n", map[string]string{"A": "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, parseTrailers(tc.msg)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://user:pw@example.com/fleet.git", "https://example.com/fleet.git"},
		{"https://token@example.com/fleet.git", "https://example.com/fleet.git"},
		{"ssh://git@example.com/fleet.git", "ssh://git@example.com/fleet.git"},
		{"ssh://git:pw@example.com/fleet.git", "ssh://git@example.com/fleet.git"},
		{"git@example.com:org/fleet.git", "git@example.com:org/fleet.git"},
		{"file:///srv/fleet.git", "file:///srv/fleet.git"},
	} {
		if got, _ := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestOpenEmpty: an empty repo opens, with no branches.
func TestOpenEmpty(t *testing.T) {
	t.Parallel()
	srv, err := gitserver.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Init("empty"); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	r, err := Open(ctxT(t), hs.URL+"/empty.git")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Branch("main"); !errors.Is(err, ErrBranchNotFound) {
		t.Errorf("Branch(main) in an empty repo: %v", err)
	}
	_, err = r.Promote(ctxT(t), PromoteRequest{Rollout: "r", Wave: "w", Source: strings.Repeat("ab", 20), Targets: targets("x")})
	if !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("Promote of an unknown source: %v", err)
	}
}

// TestConcurrentUse: Promote calls for different sites and reads run at
// once on one Repo (run with -race); the pushes are serialized.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	sites := []string{"s1", "s2", "s3", "s4"}
	var branches []string
	for _, s := range sites {
		branches = append(branches, "sites/"+s)
	}
	f := newFleet(t, branches...)
	src := f.commitOn(t, "main", "Bump web", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(sites))
	for _, s := range sites {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "w", Source: src, Targets: targets(s)})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := r.ReadFile(src, "fleetwave.yaml")
			if err == nil {
				_, err = r.Branch("sites/" + s)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, b := range branches {
		if got, want := run(t, f.dir, "rev-parse", b+"^{tree}"), run(t, f.dir, "rev-parse", src+"^{tree}"); got != want {
			t.Errorf("%s tree %s, want %s", b, got, want)
		}
	}
}

func TestIsAncestor(t *testing.T) {
	f := newFleet(t, "sites/ams-1")
	r := f.open(t)
	first := f.head(t, "main")
	second := f.commitOn(t, "main", "second", map[string]string{"b.txt": "b\n"})
	side := f.commitOn(t, "sites/ams-1", "side", map[string]string{"c.txt": "c\n"})
	if err := r.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		a, c string
		want bool
	}{
		{first, second, true},
		{second, first, false},
		{second, second, true},
		{second, side, false},
	} {
		got, err := r.IsAncestor(tt.a, tt.c)
		if err != nil || got != tt.want {
			t.Errorf("IsAncestor(%s, %s) = %v, %v; want %v", short7(tt.a), short7(tt.c), got, err, tt.want)
		}
		// The real git CLI agrees.
		_, cliErr := gitErr(f.dir, "merge-base", "--is-ancestor", tt.a, tt.c)
		if (cliErr == nil) != tt.want {
			t.Errorf("git merge-base --is-ancestor %s %s disagrees", short7(tt.a), short7(tt.c))
		}
	}
	if _, err := r.IsAncestor(first, strings.Repeat("0", 40)); !errors.Is(err, ErrCommitNotFound) {
		t.Errorf("unknown commit: %v", err)
	}
}

func short7(s string) string { return s[:7] }

// TestHoldsChanges decides by content whether a commit still runs a promotion: a fix on top,
// elsewhere, holds it; a `git revert` of it (made by the git CLI), an edit of the same file, or
// a file it deleted coming back does not, although each descends from it.
func TestHoldsChanges(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1")
	promo := f.commitOn(t, "sites/ams-1", "Promote", map[string]string{"apps/web/deploy.yaml": "image: web:2\n", "apps/api/deploy.yaml": ""})
	fix := f.commitOn(t, "sites/ams-1", "someone's fix elsewhere", map[string]string{"other.txt": "x\n"})
	reverted := f.commitFunc(t, "sites/ams-1", "unused", func(dir string) {
		run(t, dir, "revert", "--no-edit", promo)
		run(t, dir, "reset", "--soft", "HEAD~1") // CommitFunc commits what the edit left
	})
	r := f.open(t)
	for _, tc := range []struct {
		name, commit string
		want         bool
	}{
		{"the promotion itself", promo, true},
		{"a fix on top, elsewhere", fix, true},
		{"a git revert of it", reverted, false},
	} {
		if got, err := r.HoldsChanges(promo, tc.commit); err != nil || got != tc.want {
			t.Errorf("%s: holds %v (%v), want %v", tc.name, got, err, tc.want)
		}
	}
	edited := f.commitOn(t, "sites/ams-1", "edit the same file", map[string]string{"apps/web/deploy.yaml": "image: web:3\n"})
	back := f.commitOn(t, "sites/ams-1", "the deleted file back", map[string]string{"apps/web/deploy.yaml": "image: web:2\n", "apps/api/deploy.yaml": "back\n"})
	r = f.open(t)
	if got, _ := r.HoldsChanges(promo, edited); got {
		t.Error("an edit of the promoted file still holds the promotion")
	}
	if got, _ := r.HoldsChanges(promo, back); got {
		t.Error("a file the promotion deleted came back, and it still holds the promotion")
	}
	if ok, err := r.IsAncestor(promo, reverted); err != nil || !ok {
		t.Errorf("the revert descends from the promotion: %v %v", ok, err)
	}
}
