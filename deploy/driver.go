package deploy

import (
	"context"

	"github.com/fleetwave/fleetwave/rollout"
)

// Driver observes sites. Observe reports an unreachable site as a SiteState with Reachable
// false and a message, not as an error: errors are for misuse (an unknown site, a broken
// configuration), unreachability is data the workflow judges.
type Driver interface {
	Observe(ctx context.Context, site rollout.Site) (rollout.SiteState, error)
}

// Reconciler is a Driver that can ask a site to apply its branch now instead of at its next
// interval (Flux's reconcile request). Drivers without it are simply waited for.
type Reconciler interface {
	RequestReconcile(ctx context.Context, site rollout.Site) error
}

// Simulator is a Driver that observes no real site (the simulated fleet): a rollout whose worker
// uses one says so in its status, so that nobody mistakes its health gates for real ones.
type Simulator interface {
	Simulated() bool
}

// SimulatedNote is what a rollout's status says when its sites were simulated.
const SimulatedNote = "SIMULATED SITES: this worker observes a simulated fleet (--driver sim), not real clusters; its health gates checked nothing real"

// Validator is a Driver that can check a site's settings against the site itself before a
// rollout writes anything.
type Validator interface {
	Validate(ctx context.Context, site rollout.Site) error
}

// Watcher is a Driver that tells when sites may have changed, so a wait for convergence sees a
// site apply its commit when it happens instead of at its next poll. Polling stays the
// fallback: a watch that breaks, or cannot start, only costs the poll interval.
type Watcher interface {
	// Watch returns a channel that receives after one of sites may have changed, until ctx
	// ends. Sends never block: changes that come while one is pending are merged into it.
	Watch(ctx context.Context, sites []rollout.Site) (<-chan struct{}, error)
}

// Notify sends on ch unless a send is already pending: the non-blocking, merging send that
// Watcher channels use.
func Notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
