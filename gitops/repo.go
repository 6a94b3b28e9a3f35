package gitops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Sentinel errors returned (wrapped) by Repo methods; check them with errors.Is.
var (
	// ErrBranchNotFound means a branch does not exist on the remote as of the last fetch.
	ErrBranchNotFound = errors.New("branch not found")
	// ErrPushRejected means the git server refused a push for a reason a retry cannot fix: a
	// pre-receive hook, a protected branch, missing rights. The error carries the server's
	// message.
	ErrPushRejected = errors.New("push rejected by the git server")
	// ErrFileNotFound means a path does not name a file in a commit's tree.
	ErrFileNotFound = errors.New("file not found")
	// ErrCommitNotFound means a commit is not known to the repo as of the last fetch.
	ErrCommitNotFound = errors.New("commit not found")
	// ErrNonFastForward means a push was rejected because a branch moved on the
	// remote; Promote and Revert retry on it and return it only once
	// they ran out of attempts.
	ErrNonFastForward = errors.New("non-fast-forward")
	// ErrRevertConflict means a promotion cannot be reverted because a later
	// commit changed a path that the promotion changed.
	ErrRevertConflict = errors.New("revert conflict")
)

const (
	remoteName    = "origin"
	remoteRefBase = "refs/remotes/" + remoteName + "/"
	// walkLimit bounds the first-parent history walks of idempotency checks.
	walkLimit = 1000
)

// Option configures a Repo in Open.
type Option func(*options)

type options struct {
	auth        transport.AuthMethod
	secrets     []string // strings that must never appear in errors or logs
	authorName  string
	authorEmail string
	now         func() time.Time
	signer      Signer // signs every commit written; nil: unsigned
	logger      *slog.Logger
	maxAttempts int
	observe     func(PushStat)
	err         error
	// history is how many generations of each branch are kept (0: all), branchHistory
	// overrides it per branch (WithHistory, WithBranchHistory).
	history       int
	branchHistory map[string]int
	compactSlack  int // objects, compactSlack but in tests
}

// PushStat is one push of new commits (by Promote or Revert): how many branches it updated,
// how long it took, and how it ended.
type PushStat struct {
	Branches int
	// Attempt is the write's attempt that pushed: 2 and more after a branch moved.
	Attempt  int
	Duration time.Duration
	// Err is nil when the server took the push; else it wraps ErrNonFastForward (a branch
	// moved: the write plans again), ErrPushRejected (refused for good), or neither (the
	// network, the server).
	Err error
}

// WithPushObserver calls observe after every push, from the goroutine that pushed (for
// metrics: it must not block).
func WithPushObserver(observe func(PushStat)) Option {
	return func(o *options) { o.observe = observe }
}

// WithBasicAuth authenticates HTTP(S) requests with a user name and password.
func WithBasicAuth(user, password string) Option {
	return func(o *options) {
		o.auth = &githttp.BasicAuth{Username: user, Password: password}
		o.secrets = append(o.secrets, password)
	}
}

// WithToken authenticates HTTP(S) requests with an access token sent as the
// password of the user "fleetwave", which GitHub, GitLab and Gitea accept.
func WithToken(token string) Option {
	return func(o *options) {
		o.auth = &githttp.BasicAuth{Username: "fleetwave", Password: token}
		o.secrets = append(o.secrets, token)
	}
}

// WithSSHKey authenticates SSH connections with a private key file, decrypted
// with passphrase when it is not empty. Host keys are checked against the
// user's known_hosts files, as go-git does by default.
func WithSSHKey(user, keyFile, passphrase string) Option {
	return func(o *options) {
		if passphrase != "" {
			o.secrets = append(o.secrets, passphrase)
		}
		auth, err := gitssh.NewPublicKeysFromFile(user, keyFile, passphrase)
		if err != nil {
			o.err = fmt.Errorf("load ssh key %s: %w", keyFile, err)
			return
		}
		o.auth = auth
	}
}

// WithAuthor sets the author and committer of the commits fleetwave writes;
// the default is "fleetwave <fleetwave@localhost>".
func WithAuthor(name, email string) Option {
	return func(o *options) { o.authorName, o.authorEmail = name, email }
}

// WithClock sets the clock that dates new commits; the default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithLogger sets the logger; by default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithMaxAttempts sets how many times Promote and Revert push before giving
// up on branches that keep moving (non-fast-forward rejections); default 5.
func WithMaxAttempts(n int) Option {
	return func(o *options) { o.maxAttempts = n }
}

// Repo is an in-memory copy of one remote fleet repo: its branches as of the
// last fetch and the objects they reach. A Repo is safe for concurrent use;
// writes (Refresh, Promote, Revert) are serialized.
type Repo struct {
	url     string // as given; may hold credentials
	safeURL string // url without credentials, for errors and logs
	opts    options

	mu   sync.RWMutex
	repo *git.Repository
	stor *memory.Storage
	// kept is how many objects the last compaction kept; shed is set once one shed anything
	// (history.go). compactions and restarts count them.
	kept                  int
	shed                  bool
	compactions, restarts int
	// incomplete is set when a fresh start after a fetch that missed shed objects failed.
	incomplete bool

	// beforePush, when set by tests, runs right before every push attempt
	// with the attempt number (1-based).
	beforePush func(attempt int)
	// warnedNotAtomic is set once the log said that the remote does not support atomic pushes.
	warnedNotAtomic bool
	// lastPushAtomic records whether the last push asked for an atomic
	// update; read by tests.
	lastPushAtomic bool
}

// Open prepares a Repo for the remote url (http(s)://, ssh://, git@host:path
// or file://) and fetches all of its branches. The error names the url
// without credentials.
func Open(ctx context.Context, url string, opts ...Option) (*Repo, error) {
	o := options{
		authorName:   "fleetwave",
		authorEmail:  "fleetwave@localhost",
		now:          time.Now,
		maxAttempts:  5,
		compactSlack: compactSlack,
	}
	for _, opt := range opts {
		opt(&o)
	}
	safe, urlSecrets := redactURL(url)
	o.secrets = append(o.secrets, urlSecrets...)
	if o.err != nil {
		return nil, fmt.Errorf("open %s: %w", safe, o.err)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.maxAttempts < 1 {
		o.maxAttempts = 1
	}
	if o.now == nil {
		o.now = time.Now
	}

	r := &Repo{url: url, safeURL: safe, opts: o}
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return r, nil
}

// start fetches the remote into a new store: every branch with all its history, or (WithHistory)
// a shallow fetch of the kept depth, and the deeper branches deeper.
func (r *Repo) start(ctx context.Context) error {
	stor := memory.NewStorage()
	repo, err := git.Init(stor, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", r.safeURL, err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{
		Name:  remoteName,
		URLs:  []string{r.url},
		Fetch: []config.RefSpec{config.RefSpec("+refs/heads/*:" + remoteRefBase + "*")},
	}); err != nil {
		return fmt.Errorf("%s: %w", r.safeURL, r.redact(err))
	}
	oldRepo, oldStor, oldKept, oldShed := r.repo, r.stor, r.kept, r.shed
	r.repo, r.stor, r.kept, r.shed = repo, stor, 0, false
	if err := r.startLocked(ctx); err != nil {
		if oldStor != nil { // a fresh start that failed keeps the copy there was
			r.repo, r.stor, r.kept, r.shed = oldRepo, oldStor, oldKept, oldShed
		}
		return err
	}
	return nil
}

func (r *Repo) startLocked(ctx context.Context) error {
	if r.opts.history == 0 {
		return r.refreshLocked(ctx)
	}
	if err := r.fetch(ctx, r.opts.history); err != nil {
		return err
	}
	for b, d := range r.opts.branchHistory {
		if d <= r.opts.history {
			continue
		}
		if _, err := r.branchLocked(b); err != nil {
			continue // not there (yet): a later fetch brings it whole
		}
		if err := r.fetch(ctx, d, config.RefSpec("+refs/heads/"+b+":"+remoteRefBase+b)); err != nil {
			return err
		}
	}
	// The shallow fetches leave go-git a list of commits whose parents are missing; the Repo
	// keeps its own boundary instead (history.go), so its later fetches are the plain ones.
	if err := r.stor.SetShallow(nil); err != nil {
		return err
	}
	return r.compact()
}

// URL returns the remote url without credentials.
func (r *Repo) URL() string { return r.safeURL }

// Refresh fetches all branches of the remote, dropping branches that were
// deleted there.
func (r *Repo) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refreshLocked(ctx)
}

func (r *Repo) refreshLocked(ctx context.Context) error {
	if r.incomplete {
		return r.restart(ctx)
	}
	var before map[plumbing.ReferenceName]plumbing.Hash
	if r.shed {
		before = r.heads()
	}
	if err := r.fetch(ctx, 0); err != nil {
		return err
	}
	if r.shed {
		ok, err := r.complete(before)
		if err != nil {
			return fmt.Errorf("fetch %s: %w", r.safeURL, err)
		}
		if !ok {
			// The server left out objects only shed history had: start afresh.
			r.opts.logger.InfoContext(ctx, "a fetched branch needs objects this copy shed; fetching the kept history afresh", "repo", r.safeURL)
			return r.restart(ctx)
		}
	}
	return r.maybeCompact()
}

// restart starts afresh from the remote. Until one succeeds the copy is incomplete, and every
// refresh tries again first.
func (r *Repo) restart(ctx context.Context) error {
	r.restarts++
	if err := r.start(ctx); err != nil {
		r.incomplete = true
		return err
	}
	r.incomplete = false
	return nil
}

// fetch fetches the refspecs (default: every branch), depth commits deep (0: all), pruning the
// branches deleted on the remote.
func (r *Repo) fetch(ctx context.Context, depth int, specs ...config.RefSpec) error {
	err := r.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RefSpecs:   specs,
		Depth:      depth,
		Auth:       r.opts.auth,
		Prune:      len(specs) == 0,
		Force:      true,
		Tags:       git.NoTags,
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return nil
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		// go-git returns before pruning when the remote has no refs at all.
		return r.dropRemoteRefs()
	default:
		return fmt.Errorf("fetch %s: %w", r.safeURL, r.redact(err))
	}
}

func (r *Repo) dropRemoteRefs() error {
	iter, err := r.stor.IterReferences()
	if err != nil {
		return err
	}
	var names []plumbing.ReferenceName
	_ = iter.ForEach(func(ref *plumbing.Reference) error {
		if strings.HasPrefix(ref.Name().String(), remoteRefBase) {
			names = append(names, ref.Name())
		}
		return nil
	})
	for _, n := range names {
		if err := r.stor.RemoveReference(n); err != nil {
			return err
		}
	}
	return nil
}

// Branch returns the commit sha of a branch as of the last fetch, or an error
// wrapping ErrBranchNotFound.
func (r *Repo) Branch(name string) (string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, err := r.branchLocked(name)
	if err != nil {
		return "", err
	}
	return h.String(), nil
}

func (r *Repo) branchLocked(name string) (plumbing.Hash, error) {
	ref, err := r.stor.Reference(plumbing.ReferenceName(remoteRefBase + name))
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return plumbing.ZeroHash, fmt.Errorf("branch %s: %w", name, ErrBranchNotFound)
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("branch %s: %w", name, err)
	}
	return ref.Hash(), nil
}

// ReadFile returns the content of the file at path in commit, which is a full
// sha or a branch name. A missing file gives an error wrapping
// ErrFileNotFound, an unknown commit one wrapping ErrCommitNotFound.
func (r *Repo) ReadFile(commit, path string) ([]byte, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, err := r.resolveLocked(commit)
	if err != nil {
		return nil, err
	}
	f, err := c.File(strings.TrimPrefix(path, "/"))
	if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound) {
		return nil, fmt.Errorf("read %s at %s: %w", path, short(c.Hash), ErrFileNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", path, short(c.Hash), err)
	}
	s, err := f.Contents()
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", path, short(c.Hash), err)
	}
	return []byte(s), nil
}

// ReadDir returns every file under dir (recursively) in commit, path → content, with paths
// relative to the repository root. A missing directory gives an empty map, not an error.
func (r *Repo) ReadDir(commit, dir string) (map[string][]byte, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, err := r.resolveLocked(commit)
	if err != nil {
		return nil, err
	}
	dir = strings.Trim(dir, "/")
	root, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", dir, short(c.Hash), err)
	}
	sub, err := root.Tree(dir)
	if errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", dir, short(c.Hash), err)
	}
	out := map[string][]byte{}
	err = sub.Files().ForEach(func(f *object.File) error {
		s, err := f.Contents()
		if err != nil {
			return err
		}
		out[dir+"/"+f.Name] = []byte(s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s at %s: %w", dir, short(c.Hash), err)
	}
	return out, nil
}

// Commit describes the commit sha (a full sha or a branch name), or returns
// an error wrapping ErrCommitNotFound.
func (r *Repo) Commit(sha string) (CommitInfo, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, err := r.resolveLocked(sha)
	if err != nil {
		return CommitInfo{}, err
	}
	return commitInfo(c), nil
}

// IsAncestor reports whether ancestor is reachable from commit (a commit counts as its own
// ancestor), as of the last fetch.
func (r *Repo) IsAncestor(ancestor, commit string) (bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, err := r.resolveLocked(ancestor)
	if err != nil {
		return false, err
	}
	c, err := r.resolveLocked(commit)
	if err != nil {
		return false, err
	}
	if a.Hash == c.Hash {
		return true, nil
	}
	// Breadth first from commit over every parent, as far as history is kept.
	seen := map[plumbing.Hash]bool{c.Hash: true}
	level := []*object.Commit{c}
	for len(level) > 0 {
		var next []*object.Commit
		for _, x := range level {
			for _, h := range x.ParentHashes {
				if h == a.Hash {
					return true, nil
				}
				if seen[h] {
					continue
				}
				seen[h] = true
				p, err := r.commitLocked(h)
				if r.shed && errors.Is(err, ErrCommitNotFound) {
					continue // shed: history ends here
				}
				if err != nil {
					return false, fmt.Errorf("is %s an ancestor of %s: %w", short(a.Hash), short(c.Hash), err)
				}
				next = append(next, p)
			}
		}
		level = next
	}
	return false, nil
}

// HoldsChanges reports whether commit runs what change did: at every path change changed from
// its first parent, commit's tree has change's content (a path change deleted is absent). It
// decides by content, not ancestry: a later commit on top (someone's fix elsewhere) still holds
// the change; a `git revert` of it, or an edit of the same files, does not, although both
// descend from it. A commit holds itself.
func (r *Repo) HoldsChanges(change, commit string) (bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, err := r.resolveLocked(change)
	if err != nil {
		return false, err
	}
	h, err := r.resolveLocked(commit)
	if err != nil {
		return false, err
	}
	if c.Hash == h.Hash || c.TreeHash == h.TreeHash {
		return true, nil
	}
	to, err := c.Tree()
	if err != nil {
		return false, fmt.Errorf("tree of %s: %w", short(c.Hash), err)
	}
	var from *object.Tree
	if c.NumParents() > 0 {
		p, err := r.parentLocked(c)
		if err != nil {
			return false, fmt.Errorf("parent of %s: %w", short(c.Hash), err)
		}
		if from, err = p.Tree(); err != nil {
			return false, fmt.Errorf("tree of %s: %w", short(p.Hash), err)
		}
	}
	held, err := h.Tree()
	if err != nil {
		return false, fmt.Errorf("tree of %s: %w", short(h.Hash), err)
	}
	changes, err := object.DiffTree(from, to)
	if err != nil {
		return false, fmt.Errorf("changes of %s: %w", short(c.Hash), err)
	}
	for _, ch := range changes {
		path, want := ch.To.Name, ch.To.TreeEntry.Hash
		if path == "" { // deleted by change: commit must not have it back
			if _, err := held.FindEntry(ch.From.Name); err == nil {
				return false, nil
			}
			continue
		}
		e, err := held.FindEntry(path)
		if err != nil || e.Hash != want {
			return false, nil
		}
	}
	return true, nil
}

// maxOwnerWalk bounds how far LastFleetwave walks back along a branch.
const maxOwnerWalk = 1000

// LastFleetwave returns the latest commit of branch (first parents from its head) that fleetwave
// wrote: a promotion or a revert, with the Fleetwave-Rollout trailer. It says which rollout
// put the branch where it is; found is false when none is within maxOwnerWalk commits.
func (r *Repo) LastFleetwave(branch string) (info CommitInfo, found bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, err := r.branchLocked(branch)
	if err != nil {
		return CommitInfo{}, false, err
	}
	c, err := r.commitLocked(h)
	if err != nil {
		return CommitInfo{}, false, err
	}
	for range maxOwnerWalk {
		if info := commitInfo(c); info.Trailers[TrailerRollout] != "" {
			return info, true, nil
		}
		if c.NumParents() == 0 {
			break
		}
		if c, err = r.parentLocked(c); errors.Is(err, errShed) {
			break
		} else if err != nil {
			return CommitInfo{}, false, fmt.Errorf("walk %s: %w", branch, err)
		}
	}
	return CommitInfo{}, false, nil
}

// resolveLocked finds a commit by full sha, or else by branch name.
func (r *Repo) resolveLocked(rev string) (*object.Commit, error) {
	if plumbing.IsHash(rev) {
		return r.commitLocked(plumbing.NewHash(rev))
	}
	if h, err := r.branchLocked(rev); err == nil {
		return r.commitLocked(h)
	}
	return nil, fmt.Errorf("commit %s: %w", rev, ErrCommitNotFound)
}

func (r *Repo) commitLocked(h plumbing.Hash) (*object.Commit, error) {
	c, err := object.GetCommit(r.stor, h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("commit %s: %w", h, ErrCommitNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

func (r *Repo) redact(err error) error {
	return redactErr(err, r.url, r.safeURL, r.opts.secrets)
}

func short(h plumbing.Hash) string { return h.String()[:7] }

// BlobHash returns the hash git gives a file of this content (`git hash-object`).
func BlobHash(data []byte) string {
	return plumbing.ComputeHash(plumbing.BlobObject, data).String()
}
