package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
)

// WatchInput is what the watch of one wave that succeeded needs: the wave's sites with their
// plan settings, and its final status (each site's promotion and verdict), carried across a
// continue-as-new.
type WatchInput struct {
	Rollout string
	Commit  string
	Wave    string
	Sites   []rollout.Site
	Health  rollout.Health
	Status  rollout.WaveStatus
	// DetailSpent is the detail budget the watch's rounds spent so far (localRound).
	DetailSpent int `json:",omitempty"`
}

// WatchResult says which site degraded; empty when there is nothing left to watch.
type WatchResult struct {
	Wave    string `json:",omitempty"`
	Site    string `json:",omitempty"`
	Message string `json:",omitempty"`
}

// WatchID is the workflow ID of the watch over a wave of a rollout.
func WatchID(rolloutID, wave string) string {
	return rolloutID + "/watch/" + wave
}

// watchHistoryLong reports whether a watch's history is long enough to continue as new: as a
// wave's (historyLong); its own variable, since the SDK's test environment cannot cancel a
// child that continued as new, which tests of a wave's continue-as-new would make a watch do.
var watchHistoryLong = longHistory

// signalStopWatch ends a watch: its rollout is reverting or ending.
const signalStopWatch = "stop-watch"

// versionRolloutWatch guards the rollout-wide watch: a wave that succeeded stays observed, by a
// Watch child workflow, until the rollout ends (runbook.Rollout.Watching).
const versionRolloutWatch = "rollout-watch"

// Watch observes the sites of a wave that succeeded, every Health.Interval, against their
// promotion and under the plan's checks, by the same rules as the wave's bake
// (runbook.Wave.WatchRound). It returns when a site degrades (the rollout then fails and reverts by
// its rollback scope) and runs until its rollout stops it otherwise; a long watch continues
// as new. The status query returns the wave's sites as the watch sees them.
func Watch(ctx workflow.Context, in WatchInput) (WatchResult, error) {
	w := rollout.Wave{Name: in.Wave}
	for _, s := range in.Status.Sites {
		w.Sites = append(w.Sites, s.Name)
	}
	d := &waveDriver{in: WaveInput{Rollout: in.Rollout, Commit: in.Commit, Wave: w, Sites: in.Sites, Health: in.Health, Status: in.Status},
		site: rollout.SitesByName(in.Sites), detailSpent: in.DetailSpent}
	d.run = runbook.NewWave(in.Rollout, in.Commit, w, in.Health, false, in.Status)
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (rollout.WaveStatus, error) {
		return d.run.Status, nil
	}); err != nil {
		return WatchResult{}, err
	}
	stop := workflow.GetSignalChannel(ctx, signalStopWatch)
	for {
		sites := d.run.Status.WatchedSites()
		if len(sites) == 0 {
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("Nothing left to watch in wave %s", in.Wave))
			return WatchResult{}, nil
		}
		if watchHistoryLong(workflow.GetInfo(ctx)) {
			if stop.ReceiveAsync(nil) {
				return WatchResult{}, nil // stopped: a signal left unread would be lost with the run
			}
			next := in
			next.Status, next.DetailSpent = d.run.Status.Carry(), d.detailSpent
			return WatchResult{}, workflow.NewContinueAsNewError(ctx, Watch, next)
		}
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Watching %s of wave %s on %s until the rollout ends: a health round every %s",
			rollout.SitesLabel(sites), in.Wave, rollout.Short(in.Commit), in.Health.Interval))
		tctx, cancel := workflow.WithCancel(ctx)
		timer := workflow.NewTimerWithOptions(tctx, in.Health.Interval, workflow.TimerOptions{Summary: "next health round"})
		stopped := false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(workflow.Future) {})
		sel.AddReceive(stop, func(c workflow.ReceiveChannel, more bool) {
			c.Receive(ctx, nil)
			stopped = true
		})
		sel.Select(ctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return WatchResult{}, err // cancelled with the rollout
		}
		if stopped {
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("Stopped: the rollout of %s is reverting or ended", rollout.Short(in.Commit)))
			return WatchResult{}, nil
		}
		ev := d.localRound(ctx, runbook.ObserveHealth{Sites: sites})
		if err := ctx.Err(); err != nil {
			return WatchResult{}, err
		}
		round, ok := ev.(runbook.HealthObserved)
		if !ok {
			// The round could not run (its local activities failed for good): the sites were
			// not observed; the next round is another try, and an unreachable site is Unknown
			// then.
			workflow.GetLogger(ctx).Warn("watch round failed", "rollout", in.Rollout, "wave", in.Wave, "error", ev)
			continue
		}
		if degraded := d.run.WatchRound(round); len(degraded) > 0 {
			s := d.run.Site(degraded[0])
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("Site %s of wave %s degraded at %s: %s", s.Name, in.Wave, round.At.UTC().Format(time.RFC3339), s.Message))
			return WatchResult{Wave: in.Wave, Site: s.Name, Message: s.Message}, nil
		}
	}
}
