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
