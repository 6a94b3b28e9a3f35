// Package kubelab starts real Kubernetes sites running real Flux for end-to-end tests, and a
// real Prometheus scraping metrics the test controls, all on 127.0.0.1 with free ports.
//
// A Lab is one shared etcd and, per site, a kube-apiserver (its own etcd prefix), the Flux
// source-controller and kustomize-controller as plain processes, and a GitRepository
// flux-system/fleet following branch "sites/<site>" of a git server the test runs (see
// gitops/gittest), applied to the namespace "default" by the Kustomization flux-system/apps.
// There is no controller manager, so workloads in tests are ConfigMaps, which Flux's health
// checks count as ready at once.
//
// Typical use:
//
//	srv := gittest.NewServer(t, "fleet", files, "sites/a", "sites/b")
//	lab := kubelab.Start(t, kubelab.Options{GitURL: srv.URL, Sites: []string{"a", "b"}})
//	// lab.Kubeconfig has a context per site for the restricted user "fleetwave".
//	lab.Sites["a"].StopAPIServer(t) // site a is unreachable until StartAPIServer
//
// The binaries come from `make kube-tools` (.tools/bin) or $FLEETWAVE_KUBE_BIN; Prometheus from
// the system package or $FLEETWAVE_PROMETHEUS. Missing binaries fail the test rather than skip
// it, because a skipped end-to-end test hides failures.
package kubelab
