package gitops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// retryBackoff is the pause before the second push attempt; it grows
// linearly with the attempt number.
var retryBackoff = 100 * time.Millisecond

// write runs plan and pushes the commits it created, starting over from a new fetch when a
// branch moved under it (tryWrite: the first attempt may plan on this copy as it is).
func (r *Repo) write(ctx context.Context, op string, plan func() ([]Change, error)) ([]Change, error) {
	for attempt := 1; ; attempt++ {
		changes, err := r.tryWrite(ctx, attempt, plan)
		if err == nil {
			return changes, nil
		}
		if !errors.Is(err, ErrNonFastForward) {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if attempt >= r.opts.maxAttempts {
			return nil, fmt.Errorf("%s: gave up after %d attempts: %w", op, attempt, err)
		}
		r.opts.logger.InfoContext(ctx, "site branch moved during push, retrying", "attempt", attempt, "error", err)
		t := time.NewTimer(time.Duration(attempt) * retryBackoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: %w (after %v)", op, ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (r *Repo) tryWrite(ctx context.Context, attempt int, plan func() ([]Change, error)) ([]Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if attempt == 1 {
		// Plan on this copy first, without a fetch: a push updates each branch from the head
		// it was planned on, so the server refuses any that moved since this copy was
		// fetched, and the next attempt plans again on a fresh fetch. A plan that writes
		// nothing somewhere (already done, nothing to revert, a conflict) or fails is made
		// again on a fresh fetch right away: no push can check it.
		changes, err := plan()
		if err == nil && allCreated(changes) {
			if err := r.pushCreated(ctx, attempt, changes); err != nil {
				return nil, err
			}
			return changes, nil
		}
	}
	if err := r.refreshLocked(ctx); err != nil {
		return nil, err
	}
	changes, err := plan()
	if err != nil {
		return nil, err
	}
	if err := r.pushCreated(ctx, attempt, changes); err != nil {
		return nil, err
	}
	return changes, nil
}

// allCreated reports whether every change of a plan writes a commit.
func allCreated(changes []Change) bool {
	for _, c := range changes {
		if !c.Created {
			return false
		}
	}
	return len(changes) > 0
}

// pushCreated pushes the commits the changes created, if any.
func (r *Repo) pushCreated(ctx context.Context, attempt int, changes []Change) error {
	var created []Change
	for _, c := range changes {
		if c.Created {
			created = append(created, c)
		}
	}
	if len(created) == 0 {
		return nil
	}
	start := time.Now()
	err := r.pushLocked(ctx, attempt, created)
	if r.opts.observe != nil {
		r.opts.observe(PushStat{Branches: len(created), Attempt: attempt, Duration: time.Since(start), Err: err})
	}
	if err != nil {
		return err
	}
	for _, c := range created {
		if c.Site == "" {
			r.opts.logger.InfoContext(ctx, "pushed branch", "revision", c.Branch+"@sha1:"+c.Commit)
			continue
		}
		r.opts.logger.InfoContext(ctx, "pushed site branch", "site", c.Site, "revision", c.Branch+"@sha1:"+c.Commit)
	}
	return nil
}

// pushLocked pushes every created commit onto its branch in one push, never
// forcing; a rejection because a branch moved is returned as
// ErrNonFastForward.
func (r *Repo) pushLocked(ctx context.Context, attempt int, created []Change) error {
	var remoteSaid limitedBuffer
	err := r.sendPack(ctx, attempt, created, &remoteSaid)
	if err == nil {
		return nil
	}
	err = r.redact(err)
	if r.rejectedBecauseMoved(ctx, err, created) {
		return fmt.Errorf("push to %s: %w: %v", r.safeURL, ErrNonFastForward, err)
	}
	if permanent(err) {
		err = fmt.Errorf("%w: %w", ErrPushRejected, err)
	}
	if said := strings.TrimSpace(remoteSaid.String()); said != "" {
		// go-git reports only the first refused ref ("atomic push
		// failure" for an innocent one); the server's messages say why.
		return fmt.Errorf("push to %s: %w (remote: %s)", r.safeURL, err, strings.Join(strings.Fields(said), " "))
	}
	return fmt.Errorf("push to %s: %w", r.safeURL, err)
}

// permanent tells whether a failed push, not refused because a branch moved, was refused by
// the server for a reason a retry cannot fix: a ref refused by a hook or a protected branch,
// missing credentials or rights, no such repository. Transport errors (the server away, a
// 5xx) are not: they pass.
func permanent(err error) bool {
	return strings.Contains(err.Error(), "command error on") ||
		errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) ||
		errors.Is(err, transport.ErrRepositoryNotFound)
}

// limitedBuffer keeps the first 2 KiB written to it: the server's messages
// during a push.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 2048 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

// nonFastForwardText are the ways go-git and git receive-pack say that a
// branch is not where the push expected it.
var nonFastForwardText = []string{
	"non-fast-forward", // go-git's own check against the advertised refs
	"fetch first",
	"stale info",
	"failed to update ref",
	"failed to lock",
	"cannot lock ref",
}

// rejectedBecauseMoved tells whether a failed push was refused because a
// site branch moved. A rejection whose text is not conclusive (e.g. an
// "atomic push failure" reported for the first branch while another one
// moved) is confirmed by listing the remote's branches.
func (r *Repo) rejectedBecauseMoved(ctx context.Context, err error, created []Change) bool {
	msg := err.Error()
	for _, s := range nonFastForwardText {
		if strings.Contains(msg, s) {
			return true
		}
	}
	if !errors.Is(err, plumbing.ErrObjectNotFound) && !strings.Contains(msg, "command error on") {
		return false // not a rejection: transport, auth, unpack errors
	}
	remote, rerr := r.repo.Remote(remoteName)
	if rerr != nil {
		return false
	}
	refs, rerr := remote.ListContext(ctx, &git.ListOptions{Auth: r.opts.auth})
	if rerr != nil {
		return false
	}
	heads := map[plumbing.ReferenceName]plumbing.Hash{}
	for _, ref := range refs {
		heads[ref.Name()] = ref.Hash()
	}
	for _, c := range created {
		if heads[plumbing.NewBranchReferenceName(c.Branch)] != plumbing.NewHash(c.Previous) {
			return true
		}
	}
	return false
}
