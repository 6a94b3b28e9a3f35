// Package gitops holds fleetwave's git mechanics: fetching a fleet repo into
// memory, reading plans and files at a commit, writing promotion and revert
// commits onto site branches, and pushing them.
//
// fleetwave only ever writes to site branches, and only with new commits: a
// promotion commit carries exactly the tree of the source commit on top of
// the site branch's head, and a revert commit is a real `git revert` of a
// promotion commit. Nothing is ever force-pushed, so `git log sites/<site>`
// is the audit trail of every rollout.
//
// Every write is idempotent, so that a retried Temporal activity never writes
// twice: commits carry trailers (Fleetwave-Rollout, Fleetwave-Source,
// Fleetwave-Wave, Fleetwave-Reason) that are looked up before writing. All
// branches changed by one Promote or Revert call go to the remote in one
// push, atomic when the server supports it; when a branch moved in the
// meantime the call fetches, recomputes and pushes again.
//
// The subpackage gitserver serves bare repositories over git smart HTTP with
// the real `git http-backend`, for `fleetwave dev` and for tests; the
// subpackage pushevent authenticates and decodes the push webhooks that
// start rollouts.
package gitops
