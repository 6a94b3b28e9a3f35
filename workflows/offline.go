package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
)

// versionOfflineDefer guards a wave deferring its offline sites (the plan's health.offline with
// action defer; runbook.Wave.Offline): probes before its batches, the convergence wait ending
// for a site offline, withdrawals, and Deferred sites rejoining.
const versionOfflineDefer = "offline-defer"

// probePoll is the most time between two probes of unreachable sites while a batch waits for
// them (ProbeSites.Until); a wave whose health interval is shorter probes at that interval.
const probePoll = 10 * time.Second

// probe observes whether the sites can be reached, as local activities in parallel chunks
// (their input, every site of a batch, stays out of the history). Until c.Until, it probes the
// unreachable ones again after a timer, until they answer: the wait is the workflow's, on its
// clock, and a control ends it early. The event lists only the sites still unreachable.
func (d *waveDriver) probe(ctx workflow.Context, c runbook.ProbeSites) runbook.WaveEvent {
	what := fmt.Sprintf("Wave %s: probing %s", d.in.Wave.Name, rollout.SitesLabel(c.Sites))
	if !c.Until.IsZero() {
		what += " until " + c.Until.UTC().Format(time.RFC3339)
	}
	workflow.SetCurrentDetails(ctx, what)
	poll := min(probePoll, max(d.in.Health.Interval, time.Second))
	sites := c.Sites
	for {
		down, failed := d.probeOnce(ctx, sites)
		if failed != nil {
			return failed
		}
		now := workflow.Now(ctx)
		if len(down) == 0 || !now.Before(c.Until) || len(d.controls) > 0 {
			return runbook.SitesProbed{At: now, Sites: c.Sites, Unreachable: down}
		}
		control, err := d.sleep(ctx, minTime(now.Add(poll), c.Until), "probe unreachable sites again")
		if err != nil || control {
			return runbook.SitesProbed{At: workflow.Now(ctx), Sites: c.Sites, Unreachable: down}
		}
		sites = sites[:0:0]
		for _, st := range down {
			sites = append(sites, st.Site)
		}
	}
}

// probeOnce probes the sites once and returns the observations of the unreachable ones, or
// the event of a probe that failed.
func (d *waveDriver) probeOnce(ctx workflow.Context, names []string) ([]rollout.SiteState, runbook.WaveEvent) {
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Second,
			MaximumAttempts:    5,
		},
	})
	parts := chunks(slices.Clone(names))
	futures := make([]workflow.Future, len(parts))
	for i, part := range parts {
		in := activities.ProbeInput{Sites: make([]rollout.Site, len(part))}
		for j, name := range part {
			in.Sites[j] = d.site(name)
		}
		var sites *activities.Sites
		futures[i] = workflow.ExecuteLocalActivity(lctx, sites.Probe, in)
	}
	var down []rollout.SiteState
	for _, f := range futures {
		var res activities.ProbeResult
		if err := f.Get(ctx, &res); err != nil {
			return nil, runbook.StepFailed{At: workflow.Now(ctx), Message: fmt.Sprintf("probe the sites of wave %s: %s", d.in.Wave.Name, errorMessage(err))}
		}
		down = append(down, res.Unreachable...)
	}
	return down, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
