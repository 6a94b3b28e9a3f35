package gitops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// WriteFiles commits files (slash-separated path → content) onto branch, over what the branch
// holds, and pushes the commit; a branch that does not exist yet starts with it, a commit
// without parent. When the branch already holds every file with this content (a retry after a
// push whose answer was lost), nothing is written and Created is false. Like every write, it
// plans again on a fresh fetch when the branch moved under it.
func (r *Repo) WriteFiles(ctx context.Context, branch string, files map[string][]byte, message string) (Change, error) {
	if err := checkLine("branch", branch); err != nil {
		return Change{}, err
	}
	if len(files) == 0 {
		return Change{}, errors.New("write files: no files")
	}
	for path := range files {
		if path == "" || strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
			return Change{}, fmt.Errorf("write files: invalid path %q", path)
		}
	}
	changes, err := r.write(ctx, "write "+branch, func() ([]Change, error) {
		c, err := r.planFiles(branch, files, message)
		return []Change{c}, err
	})
	if err != nil {
		return Change{}, err
	}
	return changes[0], nil
}

func (r *Repo) planFiles(branch string, files map[string][]byte, message string) (Change, error) {
	head, err := r.branchLocked(branch)
	if err != nil && !errors.Is(err, ErrBranchNotFound) {
		return Change{}, err
	}
	tree := map[string]leaf{}
	if !head.IsZero() {
		c, err := object.GetCommit(r.stor, head)
		if err != nil {
			return Change{}, fmt.Errorf("branch %s: %w", branch, err)
		}
		if tree, err = flatten(r.stor, c.TreeHash); err != nil {
			return Change{}, err
		}
	}
	same := true
	for path, data := range files {
		h, err := r.storeBlob(data)
		if err != nil {
			return Change{}, err
		}
		if tree[path].hash != h {
			same = false
		}
		tree[path] = leaf{hash: h, mode: filemode.Regular}
	}
	ch := Change{Branch: branch}
	if !head.IsZero() {
		ch.Commit, ch.Previous = head.String(), head.String()
		if same {
			ch.Ours = ch.Commit
			return ch, nil
		}
	}
	th, err := writeTree(r.stor, tree)
	if err != nil {
		return Change{}, err
	}
	commit, err := r.newCommit(th, head, message)
	if err != nil {
		return Change{}, err
	}
	ch.Commit, ch.Ours, ch.Created = commit.String(), commit.String(), true
	return ch, nil
}

func (r *Repo) storeBlob(data []byte) (plumbing.Hash, error) {
	o := r.stor.NewEncodedObject()
	o.SetType(plumbing.BlobObject)
	w, err := o.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.stor.SetEncodedObject(o)
}
