package gitops

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// leaf is a non-tree entry of a tree: a blob (file, executable, symlink) or
// a submodule, identified by content and mode.
type leaf struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// flatten lists every leaf under tree h by slash-separated path.
func flatten(s storer.EncodedObjectStorer, h plumbing.Hash) (map[string]leaf, error) {
	t, err := object.GetTree(s, h)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", h, err)
	}
	w := object.NewTreeWalker(t, true, nil)
	defer w.Close()
	out := map[string]leaf{}
	for {
		name, e, err := w.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("walk tree %s: %w", h, err)
		}
		if e.Mode == filemode.Dir {
			continue
		}
		out[name] = leaf{hash: e.Hash, mode: e.Mode}
	}
}

// writeTree writes the tree objects holding exactly files into s and returns
// the root tree's hash. Blobs must already be in s.
func writeTree(s storer.EncodedObjectStorer, files map[string]leaf) (plumbing.Hash, error) {
	type dir struct {
		leaves map[string]leaf
		subs   map[string]map[string]leaf
	}
	d := dir{leaves: map[string]leaf{}, subs: map[string]map[string]leaf{}}
	for p, l := range files {
		head, rest, nested := strings.Cut(p, "/")
		if head == "" || (nested && rest == "") {
			return plumbing.ZeroHash, fmt.Errorf("invalid path %q", p)
		}
		if !nested {
			d.leaves[head] = l
			continue
		}
		if d.subs[head] == nil {
			d.subs[head] = map[string]leaf{}
		}
		d.subs[head][rest] = l
	}
	entries := make([]object.TreeEntry, 0, len(d.leaves)+len(d.subs))
	for name, l := range d.leaves {
		if _, ok := d.subs[name]; ok {
			return plumbing.ZeroHash, &clashError{path: name}
		}
		entries = append(entries, object.TreeEntry{Name: name, Mode: l.mode, Hash: l.hash})
	}
	for name, sub := range d.subs {
		h, err := writeTree(s, sub)
		if err != nil {
			if clash, ok := err.(*clashError); ok {
				return plumbing.ZeroHash, &clashError{path: name + "/" + clash.path}
			}
			return plumbing.ZeroHash, err
		}
		entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
	}
	sort.Sort(object.TreeEntrySorter(entries))
	t := &object.Tree{Entries: entries}
	o := s.NewEncodedObject()
	if err := t.Encode(o); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode tree: %w", err)
	}
	h, err := s.SetEncodedObject(o)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store tree: %w", err)
	}
	return h, nil
}

// clashError is returned by writeTree when a path is both a file and a
// directory.
type clashError struct{ path string }

func (e *clashError) Error() string { return e.path + " is both a file and a directory" }
