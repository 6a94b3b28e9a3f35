// Package sim is a simulated fleet: each simulated site follows its site branch on a git
// server the way Flux would, and derives its health from what it applied.
//
// A site applies a new head of its branch after the reconcileDelay that the new commit's
// .fleetwave/sim.yaml asks for, then reports that revision. The same file says which sites are
// degraded (their health check fails from then on) or unreachable:
//
//	reconcileDelay: 2s       # how long applying this commit takes (default 1s)
//	degraded: [ams-1]        # these sites fail their health check; "*" means every site
//	unreachable: []          # these sites cannot be observed; "*" means every site
//
// A sim.yaml that does not parse makes the site Stalled, as a broken kustomization would.
// Because scenarios live in git, a rollout against the simulated fleet is reproducible.
package sim
