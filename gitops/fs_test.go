package gitops

import (
	"errors"
	"io/fs"
	"testing"
	"testing/fstest"
)

// TestFS checks the commit's files as an fs.FS with the standard library's own conformance
// test, against what the git CLI committed.
func TestFS(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	sha := f.commitOn(t, "main", "inventory", map[string]string{
		"sites/ams-1.yaml":      "kind: Site\nname: ams-1\n",
		"sites/eu/fra-1.yaml":   "kind: Site\nname: fra-1\n",
		"sites/eu.d/notes.txt":  "a directory whose name sorts after eu in git's order\n",
		"sites/ams-1.yaml.orig": "old\n",
	})
	r := f.open(t)
	fsys, err := r.FS(sha)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "fleetwave.yaml", "apps/web/deploy.yaml", "sites/ams-1.yaml", "sites/eu/fra-1.yaml", "sites/eu.d/notes.txt"); err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(fsys, "sites/*.yaml")
	if err != nil || len(names) != 1 || names[0] != "sites/ams-1.yaml" {
		t.Errorf("Glob = %v, %v", names, err)
	}
	if b, err := fs.ReadFile(fsys, "sites/eu/fra-1.yaml"); err != nil || string(b) != "kind: Site\nname: fra-1\n" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	// A snapshot: the files of the commit, not of the branch's head later.
	f.commitOn(t, "main", "remove", map[string]string{"sites/ams-1.yaml": ""})
	if err := r.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(fsys, "sites/ams-1.yaml"); err != nil {
		t.Errorf("the commit's file is gone after a later commit removed it: %v", err)
	}
	head, _ := r.FS("main")
	if _, err := fs.Stat(head, "sites/ams-1.yaml"); !errorsIsNotExist(err) {
		t.Errorf("Stat of a removed file at main: %v", err)
	}
}

func errorsIsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
