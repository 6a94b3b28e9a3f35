package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
)

// WaveInput is what a wave child workflow needs: its part of the plan and its initial status.
type WaveInput struct {
	Rollout string
	Commit  string
	Wave    rollout.Wave
	// Sites are the wave's members with their plan settings, in Wave.Sites order.
	Sites  []rollout.Site
	Health rollout.Health
	Status rollout.WaveStatus
}

// WaveResult is the final status of a wave that succeeded. A failed wave returns an
// ErrTypeWaveFailed application error carrying the status instead.
type WaveResult struct {
	Status rollout.WaveStatus
	// Aborted is true when the rollout stopped the wave at a safe point.
	Aborted bool
}

type waveRun struct {
	in      WaveInput
	status  rollout.WaveStatus
	paused  bool
	aborted bool
	// index maps a site's name to its position in status.Sites and in.Sites (the same order),
	// so that a wave of thousands of sites is not searched once per site.
	index map[string]int
}

// Wave promotes one wave in batches of MaxParallel, waits for every batch to converge, then
// bakes: it checks every site each Health.Interval until Bake has passed. The first degraded
// site ends the wave with ErrTypeWaveFailed; the parent decides what to revert.
func Wave(ctx workflow.Context, in WaveInput) (WaveResult, error) {
	w := &waveRun{in: in, status: in.Status, index: make(map[string]int, len(in.Status.Sites))}
	for i, s := range w.status.Sites {
		w.index[s.Name] = i
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (rollout.WaveStatus, error) {
		return w.status, nil
	}); err != nil {
		return WaveResult{}, err
	}
	w.status.StartedAt = workflow.Now(ctx)
	short := rollout.Short(in.Commit)
	signals := workflow.GetSignalChannel(ctx, signalControl)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var action string
			signals.Receive(ctx, &action)
			switch action {
			case UpdatePause:
				w.paused = true
			case UpdateResume:
				w.paused = false
			case UpdateAbort:
				w.aborted = true
			}
		}
	})

	batches := in.Wave.Batches()
	for bi, batch := range batches {
		// A batch boundary is a safe point: every promoted site has a verdict.
		if err := w.hold(ctx); err != nil {
			return WaveResult{}, err
		}
		if w.aborted {
			return w.abort(ctx)
		}
		w.status.State = rollout.StatePromoting
		targets := make([]gitops.Target, len(batch))
		for i, name := range batch {
			targets[i] = gitops.Target{Site: name, Branch: w.siteStatus(name).Branch}
		}
		label := fmt.Sprintf("%s to %s", strings.Join(batch, ", "), short)
		if len(batches) > 1 {
			label += fmt.Sprintf(" (batch %d/%d)", bi+1, len(batches))
		}
		workflow.SetCurrentDetails(ctx, "Promoting "+label)
		var promoted activities.ChangeResult
		var git *activities.Git
		err := workflow.ExecuteActivity(gitOptions(ctx, "promote "+label), git.Promote, activities.PromoteInput{
			Rollout: in.Rollout, Wave: in.Wave.Name, Source: in.Commit, Targets: targets,
		}).Get(ctx, &promoted)
		if err != nil {
			return w.fail(ctx, fmt.Sprintf("promote %s in wave %s: %s", strings.Join(batch, ", "), in.Wave.Name, errorMessage(err)))
		}
		now := workflow.Now(ctx)
		for _, c := range promoted.Changes {
			s := w.siteStatus(c.Site)
			// Promoted when the branch holds this rollout's promotion commit, whether this
			// attempt wrote it or a lost one did: such a site is reverted if it degrades.
			s.Promotion, s.Promoted, s.Previous = c.Commit, c.RolloutCommit() != "", c.Previous
			s.Verdict, s.UpdatedAt = rollout.VerdictConverging, now
		}

		w.status.State = rollout.StateConverging
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Waiting for %s to apply %s (timeout %s)", strings.Join(batch, ", "), short, in.Health.ConvergenceTimeout))
		if reason := w.converge(ctx, batch); reason != "" {
			return w.fail(ctx, reason)
		}
	}

	w.status.State = rollout.StateBaking
	w.status.ConvergedAt = workflow.Now(ctx)
	w.status.BakeUntil = w.status.ConvergedAt.Add(in.Wave.Bake)
	for round := 1; ; round++ {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Baking wave %s until %s: health round %d, every %s",
			in.Wave.Name, w.status.BakeUntil.UTC().Format(time.RFC3339), round, in.Health.Interval))
		if reason := w.checkHealth(ctx); reason != "" {
			return w.fail(ctx, reason)
		}
		now := workflow.Now(ctx)
		if !now.Before(w.status.BakeUntil) {
			break
		}
		sleep := min(in.Health.Interval, w.status.BakeUntil.Sub(now))
		stopped, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
			Timeout: sleep, TimerOptions: workflow.TimerOptions{Summary: "next health round"},
		}, func() bool { return w.aborted })
		if err != nil {
			return WaveResult{}, err
		}
		if stopped {
			return w.abort(ctx)
		}
	}
	// A paused rollout holds the wave after its bake, until resumed.
	if err := w.hold(ctx); err != nil {
		return WaveResult{}, err
	}
	if w.aborted {
		return w.abort(ctx)
	}
	w.status.State = rollout.StateSucceeded
	w.status.FinishedAt = workflow.Now(ctx)
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Wave %s healthy on %s", in.Wave.Name, short))
	return WaveResult{Status: w.status}, nil
}

// hold waits while the rollout is paused and not aborted.
func (w *waveRun) hold(ctx workflow.Context) error {
	if !w.paused || w.aborted {
		return nil
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Paused in wave %s: waiting for resume", w.in.Wave.Name))
	state := w.status.State
	w.status.State = rollout.StatePaused
	err := workflow.Await(ctx, func() bool { return !w.paused || w.aborted })
	w.status.State = state
	return err
}

// abort ends the wave at a safe point: sites keep their verdicts and their commits.
func (w *waveRun) abort(ctx workflow.Context) (WaveResult, error) {
	w.status.State = rollout.StateAborted
	w.status.Message = "stopped by an operator"
	w.status.FinishedAt = workflow.Now(ctx)
	workflow.SetCurrentDetails(ctx, "Aborted by an operator")
	return WaveResult{Status: w.status, Aborted: true}, nil
}

// converge waits for the batch to apply its promotion commits and returns a failure reason, or
// "" when every site converged.
func (w *waveRun) converge(ctx workflow.Context, batch []string) string {
	in := activities.ConvergeInput{Deadline: workflow.Now(ctx).Add(w.in.Health.ConvergenceTimeout)}
	for _, name := range batch {
		in.Sites = append(in.Sites, activities.Expectation{Site: w.site(name), Commit: w.siteStatus(name).Promotion})
	}
	var res activities.ConvergeResult
	var sites *activities.Sites
	err := workflow.ExecuteActivity(convergeOptions(ctx, w.in.Health.ConvergenceTimeout,
		fmt.Sprintf("wait for %s to apply %s", strings.Join(batch, ", "), rollout.Short(w.in.Commit))),
		sites.WaitConverged, in).Get(ctx, &res)
	if err != nil {
		return fmt.Sprintf("wait for %s to converge in wave %s: %s", strings.Join(batch, ", "), w.in.Wave.Name, errorMessage(err))
	}
	now := workflow.Now(ctx)
	var failed []string
	for i, e := range in.Sites {
		s := w.siteStatus(e.Site.Name)
		st := res.States[i]
		s.UpdatedAt, s.Revision = now, st.Revision
		if res.Converged[i] {
			s.Message = "applied " + rollout.Short(e.Commit)
			continue
		}
		s.Verdict = rollout.VerdictDegraded
		switch {
		case st.FluxFailed(e.Commit):
			s.Message = fmt.Sprintf("flux failed to apply %s: %s", rollout.Short(e.Commit), st.Message)
		case res.Failed:
			// Another site failed first; this one was still converging.
			s.Verdict = rollout.VerdictConverging
			continue
		case !st.Reachable:
			s.Message = fmt.Sprintf("did not converge within %s: unreachable: %s", w.in.Health.ConvergenceTimeout, st.Message)
		default:
			s.Message = fmt.Sprintf("did not converge within %s: applied %q, want %s", w.in.Health.ConvergenceTimeout, st.Revision, rollout.Short(e.Commit))
		}
		failed = append(failed, e.Site.Name)
	}
	return w.reason(failed)
}

// checkHealth runs one health round over the whole wave and returns a failure reason, or "".
func (w *waveRun) checkHealth(ctx workflow.Context) string {
	in := activities.ObserveInput{Checks: w.in.Health.Checks}
	for _, s := range w.status.Sites {
		in.Sites = append(in.Sites, w.site(s.Name))
	}
	var res activities.ObserveResult
	var sites *activities.Sites
	err := workflow.ExecuteActivity(observeOptions(ctx, fmt.Sprintf("check health of wave %s (%d sites)", w.in.Wave.Name, len(in.Sites))),
		sites.Observe, in).Get(ctx, &res)
	if err != nil {
		return fmt.Sprintf("check health of wave %s: %s", w.in.Wave.Name, errorMessage(err))
	}
	now := workflow.Now(ctx)
	var degraded []string
	for i := range w.status.Sites {
		s := &w.status.Sites[i]
		s.ObserveHealth(res.States[i], s.Promotion, w.in.Health, now)
		if s.Verdict == rollout.VerdictDegraded {
			degraded = append(degraded, s.Name)
		}
	}
	return w.reason(degraded)
}

// reason names the failed sites and why the first one failed.
func (w *waveRun) reason(sites []string) string {
	if len(sites) == 0 {
		return ""
	}
	first := w.siteStatus(sites[0])
	if len(sites) == 1 {
		return fmt.Sprintf("site %s degraded in wave %s: %s", sites[0], w.in.Wave.Name, first.Message)
	}
	return fmt.Sprintf("sites %s degraded in wave %s: %s: %s", strings.Join(sites, ", "), w.in.Wave.Name, sites[0], first.Message)
}

// site returns the named site's plan settings.
func (w *waveRun) site(name string) rollout.Site {
	if i, ok := w.index[name]; ok && i < len(w.in.Sites) && w.in.Sites[i].Name == name {
		return w.in.Sites[i]
	}
	return rollout.Site{Name: name}
}

// siteStatus returns the named site's status, which the wave owns.
func (w *waveRun) siteStatus(name string) *rollout.SiteStatus {
	if i, ok := w.index[name]; ok {
		return &w.status.Sites[i]
	}
	return w.status.Site(name)
}

func (w *waveRun) fail(ctx workflow.Context, reason string) (WaveResult, error) {
	w.status.State = rollout.StateFailed
	w.status.Message = reason
	w.status.FinishedAt = workflow.Now(ctx)
	workflow.SetCurrentDetails(ctx, "Failed: "+reason)
	return WaveResult{Status: w.status}, temporal.NewNonRetryableApplicationError(reason, ErrTypeWaveFailed, nil, w.status)
}
