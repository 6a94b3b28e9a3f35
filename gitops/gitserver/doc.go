// Package gitserver serves bare git repositories over git smart HTTP with
// the real `git http-backend`, so that pushes get git's own ref locking,
// compare-and-swap and atomic updates. It backs `fleetwave dev` and tests;
// it has no authentication and Listen binds loopback only.
//
// Typical test use:
//
//	srv, _ := gitserver.New(t.TempDir())
//	dir, _ := srv.Init("fleet")
//	sha, _ := gitserver.Seed(dir, map[string]string{"apps/web.yaml": "..."}, "sites/ams-1")
//	hs := httptest.NewServer(srv)
//	url := hs.URL + "/fleet.git"
package gitserver
