// Package test holds fleetwave's end-to-end tests (build tag e2e): real Temporal dev server,
// real git server over HTTP, the simulated fleet, checked with the git CLI. `make test` builds
// the services they need and runs them.
package test
