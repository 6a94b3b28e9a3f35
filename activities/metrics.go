package activities

import (
	"context"

	"go.temporal.io/sdk/activity"

	"github.com/fleetwave/fleetwave/rollout"
)

// MetricGateResults counts health check measurements by check, site and result (tags
// "check", "site", "result": "pass", "fail" or "unknown"), through the activity's metrics
// handler (see workflows' metrics).
const MetricGateResults = "fleetwave_gate_results_total"

// countGateResults counts the check measurements of a health round.
func countGateResults(ctx context.Context, states []rollout.SiteState) {
	if !activity.IsActivity(ctx) {
		return
	}
	h := activity.GetMetricsHandler(ctx)
	for _, st := range states {
		for _, c := range st.Checks {
			result := "fail"
			switch {
			case c.Unknown:
				result = "unknown"
			case c.OK:
				result = "pass"
			}
			h.WithTags(map[string]string{"check": c.Name, "site": st.Site, "result": result}).Counter(MetricGateResults).Inc(1)
		}
	}
}
