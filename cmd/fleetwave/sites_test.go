package main

import (
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/workflows"
)

// TestSiteState: STATE from what Temporal knows of the fleet: a running catch-up first
// (Deferred while it probes, CatchingUp once it promotes), then drift, then the site's source
// commit against the fleet's last succeeded commit; nothing without a target.
func TestSiteState(t *testing.T) {
	since := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	view := workflows.SitesView{Target: "t", CatchUps: map[string]workflows.CatchUpSummary{
		"off":  {ID: "catchup/edge/off", Site: "off", Commit: "t", OfflineSince: since},
		"back": {ID: "catchup/edge/back", Site: "back", Commit: "t"},
	}}
	for _, tc := range []struct {
		r     siteReport
		view  workflows.SitesView
		state string
	}{
		{siteReport{Site: "a", Source: "t"}, view, "InSync"},
		{siteReport{Site: "a", Source: "old"}, view, "Behind"},
		{siteReport{Site: "a", Source: "t", Drift: true}, view, "Drifted"},
		{siteReport{Site: "off", Source: "old"}, view, "Deferred"},
		{siteReport{Site: "back", Source: "old", Drift: true}, view, "CatchingUp"},
		{siteReport{Site: "a", Source: "t"}, workflows.SitesView{}, ""},
	} {
		r := tc.r
		r.judge(tc.view)
		if r.State != tc.state || r.Running != tc.r.Source || r.Target != tc.view.Target {
			t.Errorf("%s (source %s, drift %v): state %q, running %q, target %q; want %q", r.Site, tc.r.Source, tc.r.Drift, r.State, r.Running, r.Target, tc.state)
		}
		if r.Site == "off" && (!r.Since.Equal(since) || r.CatchUp != "catchup/edge/off") {
			t.Errorf("deferred site: since %s, catch-up %q", r.Since, r.CatchUp)
		}
	}
}
