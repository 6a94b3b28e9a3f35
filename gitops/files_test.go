package gitops

import (
	"context"
	"strings"
	"testing"
)

// TestWriteFiles writes files on a branch that does not exist, then more on top, and checks
// with the git CLI that the branch holds exactly them, starts with a commit without parent,
// and that writing the same files again writes nothing.
func TestWriteFiles(t *testing.T) {
	f := newFleet(t, "sites/ams-1")
	r := f.open(t)
	ctx := context.Background()
	first, err := r.WriteFiles(ctx, "evidence", map[string][]byte{"evidence/demo/a.md": []byte("# a\n")}, "evidence: a")
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || first.Previous != "" || f.head(t, "evidence") != first.Commit {
		t.Fatalf("first write: %+v, head %s", first, f.head(t, "evidence"))
	}
	if parents := run(t, f.dir, "rev-list", "--parents", "-n1", "evidence"); parents != first.Commit {
		t.Errorf("the branch's first commit has parents: %q", parents)
	}
	second, err := r.WriteFiles(ctx, "evidence", map[string][]byte{"evidence/demo/b.md": []byte("# b\n"), "evidence/demo/b.json": []byte("{}\n")}, "evidence: b")
	if err != nil {
		t.Fatal(err)
	}
	if !second.Created || second.Previous != first.Commit {
		t.Fatalf("second write: %+v", second)
	}
	files := run(t, f.dir, "ls-tree", "-r", "--name-only", "evidence")
	if files != "evidence/demo/a.md\nevidence/demo/b.json\nevidence/demo/b.md" {
		t.Errorf("evidence holds:\n%s", files)
	}
	if got := run(t, f.dir, "show", "evidence:evidence/demo/a.md"); got != "# a" {
		t.Errorf("a.md: %q", got)
	}
	again, err := r.WriteFiles(ctx, "evidence", map[string][]byte{"evidence/demo/b.md": []byte("# b\n")}, "evidence: b")
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Commit != second.Commit || f.head(t, "evidence") != second.Commit {
		t.Errorf("writing the same file again: %+v", again)
	}
	// Someone else moved the branch: the write goes on top of their commit.
	theirs := f.commitOn(t, "evidence", "a note", map[string]string{"NOTES": "x\n"})
	third, err := r.WriteFiles(ctx, "evidence", map[string][]byte{"evidence/demo/c.md": []byte("# c\n")}, "evidence: c")
	if err != nil {
		t.Fatal(err)
	}
	if third.Previous != theirs || !strings.Contains(run(t, f.dir, "ls-tree", "-r", "--name-only", "evidence"), "NOTES") {
		t.Errorf("after a concurrent commit: %+v (theirs %s)", third, theirs)
	}
	if _, err := r.WriteFiles(ctx, "evidence", map[string][]byte{"../x": []byte("x")}, "bad"); err == nil {
		t.Error("a path with .. was written")
	}
	f.fsck(t)
}
