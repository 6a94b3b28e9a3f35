package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// sendPack pushes the created commits in one receive-pack request, atomic when the server
// advertises it: each branch from the head the commit was planned on (Change.Previous) to the
// commit, so the server refuses a branch that moved meanwhile, and a pack of the objects those
// commits add to their parents.
//
// go-git's own push finds the objects to send by walking every object the remote's refs reach:
// at 10,000 site branches, about 0.25 s of CPU and a map of every object per push, for a
// promotion that adds one commit per branch. Here they are known: each new commit, and the
// trees and blobs where its tree differs from its parent's, which the server has.
func (r *Repo) sendPack(ctx context.Context, attempt int, created []Change, progress io.Writer) error {
	ep, err := transport.NewEndpoint(r.url)
	if err != nil {
		return err
	}
	cl, err := client.NewClient(ep)
	if err != nil {
		return err
	}
	if ep.Protocol == "http" || ep.Protocol == "https" {
		cl = receivePackHTTP
	}
	sess, err := cl.NewReceivePackSession(ep, r.opts.auth)
	if err != nil {
		return err
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	req := packp.NewReferenceUpdateRequestFromCapabilities(ar.Capabilities)
	if progress != nil {
		req.Progress = progress
		if ar.Capabilities.Supports(capability.Sideband64k) {
			_ = req.Capabilities.Set(capability.Sideband64k)
		} else if ar.Capabilities.Supports(capability.Sideband) {
			_ = req.Capabilities.Set(capability.Sideband)
		}
	}
	atomic := ar.Capabilities.Supports(capability.Atomic)
	if atomic {
		_ = req.Capabilities.Set(capability.Atomic)
	} else if !r.warnedNotAtomic {
		r.warnedNotAtomic = true
		r.opts.logger.WarnContext(ctx, "git server does not support atomic pushes; branches of one wave may be updated partially")
	}
	if r.beforePush != nil {
		r.beforePush(attempt)
	}
	r.lastPushAtomic = atomic
	r.opts.logger.DebugContext(ctx, "pushing", "branches", len(created), "atomic", atomic, "attempt", attempt)
	for _, c := range created {
		req.Commands = append(req.Commands, &packp.Command{
			Name: plumbing.NewBranchReferenceName(c.Branch), Old: plumbing.NewHash(c.Previous), New: plumbing.NewHash(c.Commit)})
	}
	hashes, err := r.newObjects(created)
	if err != nil {
		return err
	}

	rd, wr := io.Pipe()
	encoded := make(chan error, 1)
	req.Packfile = rd
	go func() {
		e := packfile.NewEncoder(wr, r.stor, !ar.Capabilities.Supports(capability.OFSDelta))
		_, err := e.Encode(hashes, 10)
		_ = wr.CloseWithError(err) // the reader, the push, sees err too
		encoded <- err
	}()
	rs, err := sess.ReceivePack(ctx, req)
	if err != nil {
		_ = rd.Close() // unblocks the encoder
		if eerr := <-encoded; eerr != nil && !errors.Is(eerr, io.ErrClosedPipe) {
			return fmt.Errorf("%w (and writing the pack: %v)", err, eerr)
		}
		return err
	}
	if err := <-encoded; err != nil {
		return err
	}
	if rs != nil {
		if err := rs.Error(); err != nil {
			return err
		}
	}
	// The branches are where the push put them: record it, as a fetch would.
	for _, c := range created {
		ref := plumbing.NewHashReference(plumbing.ReferenceName(remoteRefBase+c.Branch), plumbing.NewHash(c.Commit))
		if err := r.stor.SetReference(ref); err != nil {
			return err
		}
	}
	return nil
}

// receivePackHTTP is go-git's smart HTTP transport with one change: the answer to a push is
// read whole and its connection released. go-git's ReceivePack (v5.19) never closes that
// answer's body, so every push left its connection open, and with it the request: the pack
// pushed. A worker leaked one connection, two goroutines and about a pack per rollout
// (TestPushesReleaseTheirConnection).
var receivePackHTTP = githttp.NewClient(&http.Client{Transport: releaseAnswers{http.DefaultTransport}})

// releaseAnswers reads the whole body of every git-receive-pack answer (a status report and the
// server's messages: small) and closes it, so the connection goes back to the pool at once.
type releaseAnswers struct{ next http.RoundTripper }

func (t releaseAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/git-receive-pack") {
		return res, err
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, nil
}

// maxAnswer bounds what is kept of a push's answer.
const maxAnswer = 64 << 20

// newObjects lists the objects the created commits add to what their parents reach: the
// commits, and the trees and blobs where each commit's tree differs from its first parent's.
func (r *Repo) newObjects(created []Change) ([]plumbing.Hash, error) {
	seen := map[plumbing.Hash]bool{}
	var out []plumbing.Hash
	add := func(h plumbing.Hash) bool {
		if seen[h] {
			return false
		}
		seen[h] = true
		out = append(out, h)
		return true
	}
	for _, c := range created {
		commit, err := object.GetCommit(r.stor, plumbing.NewHash(c.Commit))
		if err != nil {
			return nil, fmt.Errorf("commit %s of %s: %w", c.Commit, c.Branch, err)
		}
		if !add(commit.Hash) {
			continue
		}
		base := plumbing.ZeroHash
		if commit.NumParents() > 0 {
			parent, err := commit.Parent(0)
			if err != nil {
				return nil, fmt.Errorf("parent of %s: %w", c.Commit, err)
			}
			base = parent.TreeHash
		}
		if err := r.treeObjects(commit.TreeHash, base, add); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// treeObjects adds tree and what it holds that base (the same directory in the parent commit,
// or zero) does not.
func (r *Repo) treeObjects(tree, base plumbing.Hash, add func(plumbing.Hash) bool) error {
	if tree == base || !add(tree) {
		return nil
	}
	t, err := object.GetTree(r.stor, tree)
	if err != nil {
		return fmt.Errorf("tree %s: %w", tree, err)
	}
	old := map[string]plumbing.Hash{}
	if !base.IsZero() {
		if b, err := object.GetTree(r.stor, base); err == nil {
			for _, e := range b.Entries {
				old[e.Name] = e.Hash
			}
		}
	}
	for _, e := range t.Entries {
		switch {
		case old[e.Name] == e.Hash:
		case e.Mode == filemode.Dir:
			if err := r.treeObjects(e.Hash, old[e.Name], add); err != nil {
				return err
			}
		case e.Mode == filemode.Submodule:
			// A gitlink names a commit of another repository: nothing to send.
		default:
			add(e.Hash)
		}
	}
	return nil
}
