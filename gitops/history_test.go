package gitops

import (
	"fmt"
	"runtime"
	"testing"
)

// smallSlack compacts these small repos as a big one would be.
func smallSlack(o *options) { o.compactSlack = 64 }

// rollouts promotes n new source commits (each changing files) to every site in turn, with a
// revert of every third, as months of rollouts would; it returns the last source.
func rollouts(t *testing.T, f *fleet, r *Repo, from, n int, sites ...string) string {
	t.Helper()
	var src string
	for i := from; i < from+n; i++ {
		src = f.commitOn(t, "main", fmt.Sprintf("v%d", i), map[string]string{
			"apps/web/deploy.yaml":               fmt.Sprintf("image: web:%d\n", i),
			fmt.Sprintf("apps/gen/%d.yaml", i%7): fmt.Sprintf("n: %d\n", i),
		})
		id := fmt.Sprintf("r%d", i)
		if _, err := r.Promote(ctxT(t), PromoteRequest{Rollout: id, Wave: "all", Source: src, Targets: targets(sites...)}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := r.Revert(ctxT(t), RevertRequest{Rollout: id, Reason: "degraded", Targets: targets(sites...)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return src
}

// TestHistoryIsBounded: with WithHistory, 24 rollouts to 12 sites leave the Repo holding about
// what the kept generations need, while a Repo that keeps everything grows with every rollout;
// promoting and reverting still work after shedding, and the server's repository stays sound.
func TestHistoryIsBounded(t *testing.T) {
	t.Parallel()
	sites := []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12"}
	var branches []string
	for _, s := range sites {
		branches = append(branches, "sites/"+s)
	}
	f := newFleet(t, branches...)
	bounded := f.open(t, WithHistory(3), WithBranchHistory("main", 6), smallSlack)
	all := f.open(t)

	rollouts(t, f, bounded, 1, 24, sites...)
	if err := all.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := bounded.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b, a := bounded.History(), all.History()
	t.Logf("bounded %+v, everything %+v", b, a)
	if b.Compactions == 0 {
		t.Fatalf("no compaction in 24 rollouts: %+v", b)
	}
	// Kept: 12 branches × 3 commits and main's 6, with their trees; far below everything.
	if b.Objects > a.Objects/3 {
		t.Errorf("bounded repo holds %d objects, the unbounded one %d: not shed", b.Objects, a.Objects)
	}
	before := b.Objects

	// 11 further rollouts do not grow it past its bound.
	last := rollouts(t, f, bounded, 25, 11, sites...)
	if err := bounded.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := bounded.History().Objects; got > before+before/compactGrowth+compactSlack {
		t.Errorf("11 more rollouts: %d objects, was %d", got, before)
	}

	// Idempotent after shedding: the same promotion again writes nothing.
	ch, err := bounded.Promote(ctxT(t), PromoteRequest{Rollout: "r35", Wave: "all", Source: last, Targets: targets(sites...)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ch {
		if c.Created {
			t.Fatalf("%s: promoted again after shedding", c.Site)
		}
	}
	// A revert still gives what git gives.
	head := f.head(t, "sites/s1")
	rv, err := bounded.Revert(ctxT(t), RevertRequest{Rollout: "r35", Reason: "degraded", Targets: targets("s1")})
	if err != nil {
		t.Fatal(err)
	}
	if !rv[0].Created {
		t.Fatalf("nothing reverted: %+v", rv[0])
	}
	if got, want := run(t, f.dir, "rev-parse", rv[0].Commit+"^{tree}"), cliRevertTree(t, f, head, head); got != want {
		t.Errorf("revert tree %s, git revert gives %s", got, want)
	}
	f.fsck(t)
}

// TestHistoryRestoresShedBlob: a commit pushed by someone else that restores a file to a content
// only shed history had: a server with bitmaps, which believes this copy has every object of its commits,
// leaves the blob out of the fetch. The Repo notices and fetches its kept history afresh, and
// the file reads.
func TestHistoryRestoresShedBlob(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/s1")
	r := f.open(t, WithHistory(2), smallSlack)
	rollouts(t, f, r, 1, 12, "s1")
	if err := r.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if h := r.History(); h.Compactions == 0 {
		t.Fatalf("nothing shed: %+v", h)
	}
	old := "image: web:1\n" // v1's content, shed 11 commits ago
	// With reachability bitmaps (as large hosts keep them), the server counts every object of
	// this copy's commits' history as had, not only those of the commits themselves.
	run(t, f.dir, "repack", "-a", "-d", "-b", "--quiet")
	restored := f.commitOn(t, "main", "back to web 1", map[string]string{"apps/web/deploy.yaml": old})
	if err := r.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadFile(restored, "apps/web/deploy.yaml")
	if err != nil {
		t.Fatalf("read the restored file: %v", err)
	}
	if string(got) != old {
		t.Fatalf("restored file %q, want %q", got, old)
	}
	if h := r.History(); h.Restarts != 1 {
		t.Errorf("restarts %d, want 1 (the blob was shed, the server left it out)", h.Restarts)
	}
}

// TestHistoryShallowStart: opening a repo whose branches are deep fetches only the kept depth
// (start-up does not grow with history), and the walks stop at the boundary instead of failing.
func TestHistoryShallowStart(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/s1", "sites/s2")
	writer := f.open(t)
	rollouts(t, f, writer, 1, 12, "s1", "s2")

	full := f.open(t).History().Objects
	r := f.open(t, WithHistory(2), WithBranchHistory("main", 4), smallSlack)
	if got := r.History().Objects; got > full/2 {
		t.Fatalf("a shallow start holds %d objects of %d", got, full)
	}
	// The deeper branch is deeper: main's fourth commit is here, its fifth is not.
	mainHead := f.head(t, "main")
	fourth := run(t, f.dir, "rev-parse", mainHead+"~3")
	if _, err := r.Commit(fourth); err != nil {
		t.Errorf("main~3: %v", err)
	}
	fifth := run(t, f.dir, "rev-parse", mainHead+"~4")
	if _, err := r.Commit(fifth); err == nil {
		t.Errorf("main~4 is kept; depth 4 keeps 4 generations")
	}
	if ok, err := r.IsAncestor(fourth, mainHead); err != nil || !ok {
		t.Errorf("IsAncestor(main~3, main) = %v, %v", ok, err)
	}
	// A walk to the boundary ends there: no promotion of r1 within kept history, nothing to revert.
	rv, err := r.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "old", Targets: targets("s1")})
	if err != nil {
		t.Fatalf("a revert whose walk reaches the boundary: %v", err)
	}
	if rv[0].Created {
		t.Errorf("reverted r1's promotion, 12 rollouts deep: %+v", rv[0])
	}
	if _, found, err := r.LastFleetwave("sites/s1"); err != nil || !found {
		t.Errorf("LastFleetwave: found %v, %v", found, err)
	}
	// New pushes arrive with plain fetches.
	src := f.commitOn(t, "main", "v13", map[string]string{"apps/web/deploy.yaml": "image: web:13\n"})
	ch, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r13", Wave: "all", Source: src, Targets: targets("s1", "s2")})
	if err != nil || !ch[0].Created || !ch[1].Created {
		t.Fatalf("promote after a shallow start: %+v, %v", ch, err)
	}
	f.fsck(t)
}

// TestPushesReleaseTheirConnection: go-git's ReceivePack never closes the answer to a push, so
// a push whose answer did not end with its last read (300 branches: a long status report) left
// its HTTP connection open, two goroutines and the request with its pack. Ten promotions to 300
// branches leave no more goroutines than one does.
func TestPushesReleaseTheirConnection(t *testing.T) {
	var sites, branches []string
	for i := range 300 {
		sites = append(sites, fmt.Sprintf("s%d", i))
		branches = append(branches, fmt.Sprintf("sites/s%d", i))
	}
	f := newFleet(t, branches...)
	r := f.open(t)
	promote := func(i int) {
		src := f.commitOn(t, "main", fmt.Sprintf("v%d", i), map[string]string{"apps/web/deploy.yaml": fmt.Sprintf("image: web:%d\n", 100+i)})
		if _, err := r.Promote(ctxT(t), PromoteRequest{Rollout: fmt.Sprintf("r%d", i), Wave: "all", Source: src, Targets: targets(sites...)}); err != nil {
			t.Fatal(err)
		}
	}
	promote(1)
	after1 := runtime.NumGoroutine()
	for i := 2; i <= 10; i++ {
		promote(i)
	}
	if got := runtime.NumGoroutine(); got > after1+2 {
		t.Errorf("%d goroutines after 10 pushes, %d after one: pushes leave their connections open", got, after1)
	}
}
