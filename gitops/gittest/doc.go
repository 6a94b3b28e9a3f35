// Package gittest helps tests drive the real git CLI: a fixed identity and no user or system
// configuration, so tests behave the same on any machine, and commits pushed over HTTP the way
// a person would push them.
//
// Git and GitErr run the CLI; NewServer serves a seeded bare repository over smart HTTP with
// gitserver, and its CommitOn, CommitFunc and Head change and read it. CommitOn and CommitFunc
// also exist as functions for a repository served by something else, such as `fleetwave dev`.
//
// Typical use:
//
//	s := gittest.NewServer(t, "fleet", map[string]string{"apps/app.yaml": "version: 1\n"}, "sites/ams-1")
//	sha := s.CommitOn(t, "main", "bump app", map[string]string{"apps/app.yaml": "version: 2\n"})
//	if s.Head(t, "sites/ams-1") != s.Seed { ... }
//
// The package is for tests only. It does not import gitops, so gitops's own tests can use it.
package gittest
