// Package deploy reads the truth from sites: which revision Flux applied, whether it is ready,
// and what the health checks measure. The workflow sees sites only through a Driver, so the
// simulated fleet (deploy/sim) and real clusters are interchangeable.
package deploy
