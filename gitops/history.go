package gitops

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// A Repo that keeps everything grows with every commit it fetches or writes: at 2,000 site
// branches, a promotion is 2,000 commits, and a worker runs for months. WithHistory bounds it.
// Everything fleetwave reads lies near the branch heads: a promotion and its revert are within a
// few commits of the site branch's head, and a commit to roll out within the last pushes of the
// source branch. So the Repo keeps, of each branch, the commits a few generations below its head
// with their trees and blobs, and sheds the rest once the store has grown by a quarter
// ("compaction", no network). A walk that reaches the shed boundary ends there, as at a root.
//
// Shedding keeps go-git's view of the repository complete (no shallow list): its fetches stay
// the cheap ones of a full clone. The server then believes this copy holds every object its
// commits reach, and may leave out of a fetch a blob that only shed history had (a file restored
// to an old content). Each fetch is therefore checked: every new branch head's files must be
// here; when one is not, the Repo starts afresh from a shallow fetch of the kept depth.

// WithHistory keeps, of every branch, the commits at most depth generations below its head (the
// head is generation 1), with their files; older objects are shed. The first fetch is shallow
// (then deeper for WithBranchHistory's branches), so start-up does not grow with the depth of the branches' history either. depth 0 keeps
// everything (the default).
func WithHistory(depth int) Option {
	return func(o *options) { o.history = max(depth, 0) }
}

// WithBranchHistory keeps depth generations of one branch, for a branch that needs more history
// than the others (the source branch, when site branches are many and kept short). It has an
// effect only with WithHistory.
func WithBranchHistory(branch string, depth int) Option {
	return func(o *options) {
		if o.branchHistory == nil {
			o.branchHistory = map[string]int{}
		}
		o.branchHistory[branch] = max(depth, 1)
	}
}

// compactGrowth is how far the store may grow past what the last compaction kept, as a
// fraction of it, before the next compaction; compactSlack (objects) is a floor for small repos.
const (
	compactGrowth = 4 // a quarter
	compactSlack  = 4096
)

// errShed ends a walk that reached the shed part of history.
var errShed = errors.New("older history is not kept (gitops.WithHistory)")

// HistoryStats says how much the Repo holds: objects now, objects the last compaction kept, and
// how many compactions and fresh starts there were.
type HistoryStats struct {
	Objects, Kept, Compactions, Restarts int
}

// History returns the Repo's HistoryStats.
func (r *Repo) History() HistoryStats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return HistoryStats{Objects: len(r.stor.Objects), Kept: r.kept, Compactions: r.compactions, Restarts: r.restarts}
}

// depthOf is how many generations of branch are kept.
func (r *Repo) depthOf(branch string) int {
	if d, ok := r.opts.branchHistory[branch]; ok {
		return d
	}
	return r.opts.history
}

// maybeCompact compacts when the store grew past its bound since the last compaction.
func (r *Repo) maybeCompact() error {
	if r.opts.history == 0 || len(r.stor.Objects) < r.kept+r.kept/compactGrowth+r.opts.compactSlack {
		return nil
	}
	return r.compact()
}

// compact replaces the store with one that holds the refs, the config, and every object of the
// kept generations of each branch.
func (r *Repo) compact() error {
	next := memory.NewStorage()
	cfg, err := r.stor.Config()
	if err != nil {
		return err
	}
	if err := next.SetConfig(cfg); err != nil {
		return err
	}
	refs, err := r.stor.IterReferences()
	if err != nil {
		return err
	}
	c := copier{from: r.stor, to: next, trees: map[plumbing.Hash]bool{}}
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		if err := next.SetReference(ref); err != nil {
			return err
		}
		if ref.Type() != plumbing.HashReference {
			return nil
		}
		branch := ref.Name().String()
		if len(branch) <= len(remoteRefBase) || branch[:len(remoteRefBase)] != remoteRefBase {
			return nil
		}
		return c.generations(ref.Hash(), r.depthOf(branch[len(remoteRefBase):]))
	})
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	repo, err := git.Open(next, nil)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	r.repo, r.stor = repo, next
	r.kept = len(next.Objects)
	r.compactions++
	r.shed = true
	return nil
}

// copier copies commits and their files from one store to another.
type copier struct {
	from, to *memory.Storage
	trees    map[plumbing.Hash]bool // copied with everything below them
}

// generations copies the commits at most depth generations below head, breadth first, with
// their files. Commits already copied (through another branch) are not walked again.
func (c *copier) generations(head plumbing.Hash, depth int) error {
	level := []plumbing.Hash{head}
	for g := 0; g < depth && len(level) > 0; g++ {
		var next []plumbing.Hash
		for _, h := range level {
			if _, ok := c.to.Commits[h]; ok {
				continue
			}
			o, ok := c.from.Commits[h]
			if !ok {
				continue // shed before, or never here
			}
			commit, err := object.DecodeCommit(c.from, o)
			if err != nil {
				return err
			}
			if _, err := c.to.SetEncodedObject(o); err != nil {
				return err
			}
			if err := c.tree(commit.TreeHash); err != nil {
				return fmt.Errorf("commit %s: %w", short(h), err)
			}
			next = append(next, commit.ParentHashes...)
		}
		level = next
	}
	return nil
}

// tree copies a tree and everything below it.
func (c *copier) tree(h plumbing.Hash) error {
	if c.trees[h] {
		return nil
	}
	o, ok := c.from.Trees[h]
	if !ok {
		return fmt.Errorf("tree %s: %w", short(h), plumbing.ErrObjectNotFound)
	}
	t, err := object.DecodeTree(c.from, o)
	if err != nil {
		return err
	}
	if _, err := c.to.SetEncodedObject(o); err != nil {
		return err
	}
	for _, e := range t.Entries {
		switch e.Mode {
		case filemode.Dir:
			if err := c.tree(e.Hash); err != nil {
				return err
			}
		case filemode.Submodule:
		default:
			b, ok := c.from.Blobs[e.Hash]
			if !ok {
				return fmt.Errorf("blob %s: %w", short(e.Hash), plumbing.ErrObjectNotFound)
			}
			if _, err := c.to.SetEncodedObject(b); err != nil {
				return err
			}
		}
	}
	c.trees[h] = true
	return nil
}

// complete reports whether the files of every branch head that changed since before (the heads
// of the last fetch) are all here. It is only needed once something was shed.
func (r *Repo) complete(before map[plumbing.ReferenceName]plumbing.Hash) (bool, error) {
	refs, err := r.stor.IterReferences()
	if err != nil {
		return false, err
	}
	checked := map[plumbing.Hash]bool{}
	ok := true
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference || before[ref.Name()] == ref.Hash() {
			return nil
		}
		o, found := r.stor.Commits[ref.Hash()]
		if !found {
			ok = false
			return errStop
		}
		commit, err := object.DecodeCommit(r.stor, o)
		if err != nil {
			return err
		}
		if !r.hasTree(commit.TreeHash, checked) {
			ok = false
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return false, err
	}
	return ok, nil
}

var errStop = errors.New("stop")

// hasTree reports whether the tree h and everything below it are in the store.
func (r *Repo) hasTree(h plumbing.Hash, checked map[plumbing.Hash]bool) bool {
	if checked[h] {
		return true
	}
	o, ok := r.stor.Trees[h]
	if !ok {
		return false
	}
	t, err := object.DecodeTree(r.stor, o)
	if err != nil {
		return false
	}
	for _, e := range t.Entries {
		switch e.Mode {
		case filemode.Dir:
			if !r.hasTree(e.Hash, checked) {
				return false
			}
		case filemode.Submodule:
		default:
			if _, ok := r.stor.Blobs[e.Hash]; !ok {
				return false
			}
		}
	}
	checked[h] = true
	return true
}

// heads returns the hash of every ref.
func (r *Repo) heads() map[plumbing.ReferenceName]plumbing.Hash {
	out := map[plumbing.ReferenceName]plumbing.Hash{}
	for name, ref := range r.stor.ReferenceStorage {
		if ref.Type() == plumbing.HashReference {
			out[name] = ref.Hash()
		}
	}
	return out
}

// parentLocked returns the first parent of c, or errShed when it was shed.
func (r *Repo) parentLocked(c *object.Commit) (*object.Commit, error) {
	p, err := r.commitLocked(c.ParentHashes[0])
	if err != nil && r.shed && errors.Is(err, ErrCommitNotFound) {
		return nil, errShed
	}
	return p, err
}

// Serve's bounds: a site branch keeps 10 generations (a promotion and its revert are within
// 3 commits of its head while its rollout runs), the source branch 32 (the commits a queue of
// rollouts still has to ship).
const (
	ServeSiteHistory   = 10
	ServeSourceHistory = 32
)

// ServeHistory is the options serve opens a fleet repo with: sites generations of every branch,
// source generations of the source branch (0: ServeSiteHistory, ServeSourceHistory).
func ServeHistory(sourceBranch string, sites, source int) []Option {
	return []Option{WithHistory(cmp.Or(sites, ServeSiteHistory)), WithBranchHistory(sourceBranch, cmp.Or(source, ServeSourceHistory))}
}
