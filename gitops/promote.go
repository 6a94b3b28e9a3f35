package gitops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Target is one site and the branch that its Flux GitRepository tracks.
type Target struct {
	// Site is the site's name, used in commit messages and errors.
	Site string
	// Branch is the site branch without "refs/heads/", e.g. "sites/ams-1".
	Branch string
}

// PromoteRequest asks for the Source commit to be promoted to every target.
type PromoteRequest struct {
	// Rollout is the rollout ID, written as the Fleetwave-Rollout trailer.
	Rollout string
	// Wave is the wave's name, written as the Fleetwave-Wave trailer.
	Wave string
	// Source is the full sha (or a branch name) of the commit to promote.
	Source string
	// Targets are the site branches to write.
	Targets []Target
	// SkipMissing makes a target whose branch does not exist a Change with a Problem, and the
	// others are promoted: one missing branch is one site's failure, not the whole push's.
	SkipMissing bool
}

// RevertRequest asks for the promotions of Rollout to be reverted on every target.
type RevertRequest struct {
	// Rollout is the rollout ID whose promotion commits are reverted.
	Rollout string
	// Reason says why, written as the Fleetwave-Reason trailer on one line.
	Reason string
	// Targets are the site branches to write.
	Targets []Target
}

// Change is what happened to one site branch.
type Change struct {
	// Site and Branch are copied from the Target.
	Site, Branch string
	// Commit is the branch head after the operation: the new commit, or the
	// existing head when nothing was written.
	Commit string
	// Previous is the branch head before the operation.
	Previous string
	// Created is false when nothing was written (already promoted, already
	// reverted, or nothing to revert).
	Created bool
	// Ours is the commit of the request's rollout that the branch holds for
	// this operation, whether this call wrote it or found it (a retry after a
	// push that landed but whose response was lost): the unreverted promotion
	// commit for Promote, the revert commit for Revert. It is "" when the
	// branch holds none: a head that already had the source's tree without a
	// promotion of this rollout, or no promotion of this rollout to revert.
	// Git, read by trailers, is the truth about what a rollout wrote.
	Ours string `json:",omitempty"`
	// Problem says why a revert could not be written on this branch (its branch is gone, or a
	// later commit changed what the promotion changed) and how to fix it by hand; the other
	// targets are reverted all the same.
	Problem string `json:",omitempty"`
}

// RolloutCommit returns the commit of the rollout that the branch holds for the operation
// (Ours), also for a Change recorded before Ours existed, where only a created commit says so.
func (c Change) RolloutCommit() string {
	if c.Ours == "" && c.Created {
		return c.Commit
	}
	return c.Ours
}

// Promote writes a promotion commit for req.Source on every target's site
// branch and pushes them all in one push, returning the Changes in the order
// of req.Targets.
//
// A promotion commit has exactly the source commit's tree, the site branch's
// head as its only parent, and a message naming the source commit with
// Fleetwave-Rollout, Fleetwave-Source and Fleetwave-Wave trailers. Promote is
// idempotent: it writes nothing for a site whose branch already holds an
// unreverted promotion of the same source by the same rollout (looking back
// along first parents until a commit of another rollout), or whose head
// already has the source's tree.
//
// Promote fetches first. A missing site branch fails the whole call with an
// error wrapping ErrBranchNotFound, before anything is pushed. When the push
// is rejected because a site branch moved, Promote fetches, recomputes and
// pushes again, up to the WithMaxAttempts limit; then it returns an error
// wrapping ErrNonFastForward.
func (r *Repo) Promote(ctx context.Context, req PromoteRequest) ([]Change, error) {
	if err := checkLine("rollout", req.Rollout); err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	if err := checkLine("wave", req.Wave); err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	if req.Source == "" {
		return nil, errors.New("promote: empty source commit")
	}
	if err := checkTargets(req.Targets); err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	return r.write(ctx, "promote", func() ([]Change, error) { return r.planPromote(req) })
}

func (r *Repo) planPromote(req PromoteRequest) ([]Change, error) {
	src, err := r.resolveLocked(req.Source)
	if err != nil {
		return nil, fmt.Errorf("promote: source %w", err)
	}
	srcSHA := src.Hash.String()
	changes := make([]Change, 0, len(req.Targets))
	for _, t := range req.Targets {
		head, err := r.branchLocked(t.Branch)
		if errors.Is(err, ErrBranchNotFound) && req.SkipMissing {
			changes = append(changes, Change{Site: t.Site, Branch: t.Branch, Problem: fmt.Sprintf(
				"site branch %s does not exist; create it from the source branch first: git push origin %s:%s", t.Branch, r.sourceHint(src.Hash), t.Branch)})
			continue
		}
		if errors.Is(err, ErrBranchNotFound) {
			return nil, fmt.Errorf("promote %s to %s: site branch %s does not exist; create it from the source branch first: git push origin %s:%s: %w",
				short(src.Hash), t.Site, t.Branch, r.sourceHint(src.Hash), t.Branch, ErrBranchNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("promote %s to %s: %w", short(src.Hash), t.Site, err)
		}
		headC, err := r.commitLocked(head)
		if err != nil {
			return nil, fmt.Errorf("promote %s to %s: head of %s: %w", short(src.Hash), t.Site, t.Branch, err)
		}
		ch := Change{Site: t.Site, Branch: t.Branch, Commit: head.String(), Previous: head.String()}

		found, err := r.promoted(headC, req.Rollout, srcSHA)
		if err != nil {
			return nil, fmt.Errorf("promote %s to %s: %w", short(src.Hash), t.Site, err)
		}
		if found != nil || headC.TreeHash == src.TreeHash {
			if found != nil {
				ch.Ours = found.Hash.String()
			}
			changes = append(changes, ch)
			continue
		}

		msg := fmt.Sprintf("Promote %s to %s: %s\n\nPromote commit %s to site %s in wave %s.\n\n%s: %s\n%s: %s\n%s: %s\n",
			short(src.Hash), t.Site, subject(src.Message),
			srcSHA, t.Site, req.Wave,
			TrailerRollout, req.Rollout, TrailerSource, srcSHA, TrailerWave, req.Wave)
		h, err := r.newCommit(src.TreeHash, head, msg)
		if err != nil {
			return nil, fmt.Errorf("promote %s to %s: %w", short(src.Hash), t.Site, err)
		}
		ch.Commit, ch.Created, ch.Ours = h.String(), true, h.String()
		changes = append(changes, ch)
	}
	return changes, nil
}

// Landed reports, without writing anything, which targets' site branches hold
// an unreverted promotion of req.Source by req.Rollout: after a promotion was
// cancelled, or failed in a way that may have pushed all the same, it says
// which branches got it. A Change is returned (as Promote returns it for a
// branch already promoted) only for those; a missing branch is left out.
func (r *Repo) Landed(ctx context.Context, req PromoteRequest) ([]Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refreshLocked(ctx); err != nil {
		return nil, fmt.Errorf("landed: %w", err)
	}
	src, err := r.resolveLocked(req.Source)
	if err != nil {
		return nil, fmt.Errorf("landed: source %w", err)
	}
	var changes []Change
	for _, t := range req.Targets {
		head, err := r.branchLocked(t.Branch)
		if errors.Is(err, ErrBranchNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("landed %s on %s: %w", short(src.Hash), t.Site, err)
		}
		headC, err := r.commitLocked(head)
		if err != nil {
			return nil, fmt.Errorf("landed %s on %s: head of %s: %w", short(src.Hash), t.Site, t.Branch, err)
		}
		found, err := r.promoted(headC, req.Rollout, src.Hash.String())
		if err != nil {
			return nil, fmt.Errorf("landed %s on %s: %w", short(src.Hash), t.Site, err)
		}
		if found != nil {
			changes = append(changes, Change{Site: t.Site, Branch: t.Branch, Commit: head.String(), Previous: head.String(), Ours: found.Hash.String()})
		}
	}
	return changes, nil
}

// sourceHint names what a missing site branch should be created from in an
// error message: the default branch when there is one.
func (r *Repo) sourceHint(src plumbing.Hash) string {
	for _, b := range []string{"main", "master"} {
		if _, err := r.branchLocked(b); err == nil {
			return b
		}
	}
	return src.String()
}

// promoted returns the unreverted promotion of source by rollout in the
// first-parent history of head, or nil. The walk stops at a commit of
// another rollout: what came before it was superseded.
func (r *Repo) promoted(head *object.Commit, rollout, source string) (*object.Commit, error) {
	reverted := map[plumbing.Hash]bool{}
	var found *object.Commit
	err := r.walkFirstParent(head, func(c *object.Commit) bool {
		tr := parseTrailers(c.Message)
		if id, ok := tr[TrailerRollout]; ok && id != rollout {
			return true
		}
		if h, ok := revertedCommit(c.Message); ok {
			reverted[h] = true
			return false
		}
		if tr[TrailerRollout] == rollout && tr[TrailerSource] == source && !reverted[c.Hash] {
			found = c
			return true
		}
		return false
	})
	return found, err
}

// Revert writes, on every target's site branch, a revert commit of the most
// recent promotion commit of req.Rollout, and pushes them all in one push,
// returning the Changes in the order of req.Targets.
//
// A revert commit is what `git revert` writes: parent the current head, tree
// the head's tree with the promotion's changes undone, message
// `Revert "<subject>"` + `This reverts commit <sha>.` plus Fleetwave-Rollout
// and Fleetwave-Reason trailers. Nothing is written for a site without a
// promotion of the rollout, or whose last promotion was already reverted. If
// a commit after the promotion changed a path that the promotion changed, or
// the site branch is gone, that site's Change says so in Problem (with the
// commands to fix it by hand) and gets no commit; every other target is still
// reverted: one bad site never blocks the others' revert. Fetching and
// retries work as in Promote.
func (r *Repo) Revert(ctx context.Context, req RevertRequest) ([]Change, error) {
	if err := checkLine("rollout", req.Rollout); err != nil {
		return nil, fmt.Errorf("revert: %w", err)
	}
	if err := checkTargets(req.Targets); err != nil {
		return nil, fmt.Errorf("revert: %w", err)
	}
	reason := strings.Join(strings.Fields(req.Reason), " ")
	if reason == "" {
		reason = "unspecified"
	}
	return r.write(ctx, "revert", func() ([]Change, error) { return r.planRevert(req.Rollout, reason, req.Targets) })
}

func (r *Repo) planRevert(rollout, reason string, targets []Target) ([]Change, error) {
	changes := make([]Change, 0, len(targets))
	for _, t := range targets {
		head, err := r.branchLocked(t.Branch)
		if errors.Is(err, ErrBranchNotFound) {
			changes = append(changes, Change{Site: t.Site, Branch: t.Branch,
				Problem: fmt.Sprintf("site branch %s does not exist: nothing can be reverted there; if the site still runs the promotion, restore the branch or roll the site back by hand", t.Branch)})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("revert on %s: %w", t.Site, err)
		}
		headC, err := r.commitLocked(head)
		if err != nil {
			return nil, fmt.Errorf("revert on %s: head of %s: %w", t.Site, t.Branch, err)
		}
		ch := Change{Site: t.Site, Branch: t.Branch, Commit: head.String(), Previous: head.String()}

		p, revert, err := r.lastPromotion(headC, rollout)
		if err != nil {
			return nil, fmt.Errorf("revert on %s: %w", t.Site, err)
		}
		if p == nil {
			if revert != nil {
				ch.Ours = revert.Hash.String()
			}
			changes = append(changes, ch)
			continue
		}
		tree, err := r.revertTree(headC, p)
		if errors.Is(err, ErrRevertConflict) {
			ch.Problem = fmt.Sprintf("revert of %s conflicts: %v; resolve it by hand: git switch %s && git revert %s, fix the conflict, git revert --continue && git push origin %s",
				short(p.Hash), err, t.Branch, p.Hash, t.Branch)
			changes = append(changes, ch)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("revert %s on %s: %w", short(p.Hash), t.Site, err)
		}
		// git quotes the subject with plain double quotes and no escaping.
		msg := fmt.Sprintf("Revert \"%s\"\n\nThis reverts commit %s.\n\n%s: %s\n%s: %s\n",
			subject(p.Message), p.Hash, TrailerRollout, rollout, TrailerReason, reason)
		h, err := r.newCommit(tree, head, msg)
		if err != nil {
			return nil, fmt.Errorf("revert %s on %s: %w", short(p.Hash), t.Site, err)
		}
		ch.Commit, ch.Created, ch.Ours = h.String(), true, h.String()
		changes = append(changes, ch)
	}
	return changes, nil
}

// lastPromotion returns the most recent promotion commit of rollout in the
// first-parent history of head, or nil when there is none or it was already
// reverted by a later commit; then revert is that later commit.
func (r *Repo) lastPromotion(head *object.Commit, rollout string) (p, revert *object.Commit, err error) {
	reverted := map[plumbing.Hash]*object.Commit{}
	err = r.walkFirstParent(head, func(c *object.Commit) bool {
		if h, ok := revertedCommit(c.Message); ok {
			reverted[h] = c
			return false
		}
		tr := parseTrailers(c.Message)
		if tr[TrailerRollout] == rollout && tr[TrailerSource] != "" {
			p = c
			return true
		}
		return false
	})
	if err != nil || p == nil {
		return nil, nil, err
	}
	if rc := reverted[p.Hash]; rc != nil {
		return nil, rc, nil
	}
	return p, nil, nil
}

// revertTree returns the tree of head with the changes of p (against its
// first parent) undone, writing new tree objects as needed.
func (r *Repo) revertTree(head, p *object.Commit) (plumbing.Hash, error) {
	if len(p.ParentHashes) == 0 {
		return plumbing.ZeroHash, fmt.Errorf("promotion commit %s has no parent", p.Hash)
	}
	before, err := r.commitLocked(p.ParentHashes[0])
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if head.Hash == p.Hash {
		return before.TreeHash, nil
	}
	if head.TreeHash == p.TreeHash {
		// Later commits changed nothing in the end.
		return before.TreeHash, nil
	}
	pFiles, err := flatten(r.stor, p.TreeHash)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	beforeFiles, err := flatten(r.stor, before.TreeHash)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	headFiles, err := flatten(r.stor, head.TreeHash)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var changed []string
	for path, l := range pFiles {
		if b, ok := beforeFiles[path]; !ok || b != l {
			changed = append(changed, path)
		}
	}
	for path := range beforeFiles {
		if _, ok := pFiles[path]; !ok {
			changed = append(changed, path)
		}
	}
	sort.Strings(changed)
	for _, path := range changed {
		pl, inP := pFiles[path]
		hl, inHead := headFiles[path]
		if inP != inHead || pl != hl {
			return plumbing.ZeroHash, fmt.Errorf("%s changed after the promotion: %w", path, ErrRevertConflict)
		}
	}
	for _, path := range changed {
		if b, ok := beforeFiles[path]; ok {
			headFiles[path] = b
		} else {
			delete(headFiles, path)
		}
	}
	h, err := writeTree(r.stor, headFiles)
	var clash *clashError
	if errors.As(err, &clash) {
		return plumbing.ZeroHash, fmt.Errorf("%s: %w", clash, ErrRevertConflict)
	}
	return h, err
}

// walkFirstParent calls fn on start and its first-parent ancestors, newest
// first, until fn returns true, the root, the end of kept history, or walkLimit commits.
func (r *Repo) walkFirstParent(start *object.Commit, fn func(*object.Commit) bool) error {
	c := start
	for range walkLimit {
		if fn(c) || len(c.ParentHashes) == 0 {
			return nil
		}
		next, err := r.parentLocked(c)
		if errors.Is(err, errShed) {
			return nil // the rest of history is not kept: it ends here, as at a root
		}
		if err != nil {
			return fmt.Errorf("walk history of %s: %w", short(start.Hash), err)
		}
		c = next
	}
	return nil
}

// newCommit stores a commit by the configured author, dated by the clock.
func (r *Repo) newCommit(tree, parent plumbing.Hash, msg string) (plumbing.Hash, error) {
	sig := object.Signature{Name: r.opts.authorName, Email: r.opts.authorEmail, When: r.opts.now()}
	c := &object.Commit{
		Author:    sig,
		Committer: sig,
		Message:   msg,
		TreeHash:  tree,
	}
	if !parent.IsZero() { // zero: the first commit of a new branch
		c.ParentHashes = []plumbing.Hash{parent}
	}
	if r.opts.signer != nil {
		if err := sign(r.opts.signer, c); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	o := r.stor.NewEncodedObject()
	if err := c.Encode(o); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode commit: %w", err)
	}
	h, err := r.stor.SetEncodedObject(o)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store commit: %w", err)
	}
	return h, nil
}

func checkLine(what, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("empty %s", what)
	}
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("%s %q has a line break", what, v)
	}
	return nil
}

func checkTargets(targets []Target) error {
	seen := map[string]bool{}
	for _, t := range targets {
		if t.Site == "" || t.Branch == "" {
			return fmt.Errorf("target %+v: empty site or branch", t)
		}
		if strings.HasPrefix(t.Branch, "refs/") || strings.ContainsAny(t.Branch, " :~^?*[\\\r\n") {
			return fmt.Errorf("target %s: invalid branch name %q", t.Site, t.Branch)
		}
		if seen[t.Branch] {
			return fmt.Errorf("target %s: branch %s listed twice", t.Site, t.Branch)
		}
		seen[t.Branch] = true
		if err := checkLine("site", t.Site); err != nil {
			return err
		}
	}
	return nil
}
