package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/rollout"
)

// Sites runs the activities that observe sites.
type Sites struct {
	Driver deploy.Driver
	// Checker measures the plan's health checks; nil means a default deploy.Checker.
	Checker *deploy.Checker
	// Poll is the time between observations while waiting for convergence (default 2s). With a
	// driver that tells changes (deploy.Watcher), it is the most time between them when nothing
	// changed: a change is observed at once.
	Poll time.Duration
	// Ancestry, when set, tells whether a revision a site applied still holds the commit it
	// should run, by content (someone pushed on top of the promotion, elsewhere); nil
	// compares commits exactly.
	Ancestry Ancestry
}

// Ancestry compares the fleet repo's commits (gitops.Repo does).
type Ancestry interface {
	Refresh(ctx context.Context) error
	// HoldsChanges reports whether commit has, at every path change changed, change's
	// content (gitops.Repo.HoldsChanges).
	HoldsChanges(change, commit string) (bool, error)
}

// descendants marks observations whose applied revision holds the changes of the commit their
// site should run (rollout.SiteState.Contains), by content: a manual `git revert` of a
// promotion descends from it but no longer runs it. It fetches at most once per round, when an
// observation does not match.
type descendants struct {
	s       *Sites
	fetched bool
}

func (d *descendants) mark(ctx context.Context, st *rollout.SiteState, expect string) {
	applied := rollout.RevisionHash(st.Revision)
	if d.s.Ancestry == nil || !st.Reachable || expect == "" || applied == "" || applied == expect {
		return
	}
	ok, err := d.s.Ancestry.HoldsChanges(expect, applied)
	if err != nil && !d.fetched {
		// The applied commit may be newer than this worker's copy of the repo.
		d.fetched = true
		if ferr := d.s.Ancestry.Refresh(ctx); ferr == nil {
			ok, err = d.s.Ancestry.HoldsChanges(expect, applied)
		}
	}
	if err == nil && ok {
		st.Contains = expect
	}
}

// Expectation is a site and the commit it should run.
type Expectation struct {
	Site   rollout.Site
	Commit string
	// UnreachableSince is since when the site could not be observed, when it could not at its
	// last observation before this wait (with ConvergeInput.Offline).
	UnreachableSince time.Time `json:",omitzero"`
}

// ConvergeInput lists the sites to wait for and the absolute deadline (so a retried attempt
// does not restart the clock). With Offline, the wait also ends once a site has been
// unreachable that long (the plan's health.offline.after): the wave defers it.
type ConvergeInput struct {
	Sites    []Expectation
	Deadline time.Time
	Offline  time.Duration `json:",omitempty"`
}

// ConvergeResult holds the last observation of every site; Converged[i] says whether site i
// applied its commit and is ready.
type ConvergeResult struct {
	States    []rollout.SiteState
	Converged []bool
	// Failed is true when a site's Flux gave up on our commit (Stalled, or not Ready at it).
	Failed bool
	// TimedOut is true when the deadline passed before every site converged.
	TimedOut bool `json:",omitempty"`
	// UnreachableSince[i] (with ConvergeInput.Offline) is since when site i could not be
	// observed, zero when its last observation could.
	UnreachableSince []time.Time `json:",omitempty"`
}

// WaitConverged observes the sites until every one applied its commit and is ready, one fails
// at it, or the deadline passes; it heartbeats on every round. Reaching the deadline is not an
// error: the result says which sites did not converge and where they are.
func (s *Sites) WaitConverged(ctx context.Context, in ConvergeInput) (ConvergeResult, error) {
	poll := s.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	res := ConvergeResult{States: make([]rollout.SiteState, len(in.Sites)), Converged: make([]bool, len(in.Sites))}
	if in.Offline > 0 {
		res.UnreachableSince = make([]time.Time, len(in.Sites))
		for i, e := range in.Sites {
			res.UnreachableSince[i] = e.UnreachableSince
		}
	}
	requested := make([]bool, len(in.Sites))
	// Watch before the first round, so that a site applying between its observation and the
	// wait is not missed; the watch ends with the wait.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changes := s.watch(wctx, in.Sites)
	for {
		if err := s.convergeRound(ctx, in.Sites, &res, requested); err != nil {
			return res, err
		}
		done := 0
		for _, c := range res.Converged {
			if c {
				done++
			}
		}
		activity.RecordHeartbeat(ctx, done)
		if done == len(in.Sites) || res.Failed || offline(in, &res, time.Now()) {
			return res, nil
		}
		if !time.Now().Before(in.Deadline) {
			res.TimedOut = true
			return res, nil
		}
		wait := min(poll, time.Until(in.Deadline))
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(wait):
		case <-changes:
		}
	}
}

// convergeRound observes the sites of in that have not converged yet, observeParallel at a time
// (a round of hundreds of sites, one after the other, would see its first ones late), asks
// each that answers for the first time to reconcile, and records what it saw in res.
func (s *Sites) convergeRound(ctx context.Context, in []Expectation, res *ConvergeResult, requested []bool) error {
	var pending []int
	for i := range in {
		if !res.Converged[i] {
			pending = append(pending, i)
		}
	}
	sites := make([]rollout.Site, len(pending))
	for k, i := range pending {
		sites[k] = in[i].Site
	}
	states, err := s.observeAll(ctx, sites)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Ask once the site answers: a site that is down would only cost a second timeout.
	err = inParallel(len(pending), func(k int) error {
		if i := pending[k]; !requested[i] && states[k].Reachable {
			requested[i] = s.requestReconcile(ctx, in[i].Site)
			activity.RecordHeartbeat(ctx, in[i].Site.Name) // a round of slow sites outlasts the heartbeat timeout
		}
		return nil
	})
	if err != nil {
		return err
	}
	desc := &descendants{s: s}
	for k, i := range pending {
		st := states[k]
		desc.mark(ctx, &st, in[i].Commit)
		res.States[i] = st
		switch {
		case st.Converged(in[i].Commit):
			res.Converged[i] = true
		case st.FluxFailed(in[i].Commit):
			res.Failed = true
		}
	}
	return nil
}

// offline tracks since when each site that has not converged could not be observed
// (ConvergeInput.Offline), and reports whether one has not been for Offline.
func offline(in ConvergeInput, res *ConvergeResult, now time.Time) bool {
	if in.Offline <= 0 {
		return false
	}
	found := false
	for i, st := range res.States {
		switch {
		case res.Converged[i] || st.Reachable:
			res.UnreachableSince[i] = time.Time{}
		case res.UnreachableSince[i].IsZero():
			res.UnreachableSince[i] = cmp.Or(st.ObservedAt, now)
		}
		if !res.Converged[i] && !res.UnreachableSince[i].IsZero() && now.Sub(res.UnreachableSince[i]) >= in.Offline {
			found = true
		}
	}
	return found
}

// ProbeInput lists sites to probe.
type ProbeInput struct {
	Sites []rollout.Site
}

// ProbeResult lists the observation of each probed site that could not be reached; the
// others answered. It is recorded in the workflow's history, so it lists only those.
type ProbeResult struct {
	Unreachable []rollout.SiteState `json:",omitempty"`
}

// Probe observes once whether the sites can be reached (before a wave promotes them). It runs
// as a local activity: its input, every site of a batch, stays out of the history. The
// workflow waits between probes on its own timers.
func (s *Sites) Probe(ctx context.Context, in ProbeInput) (ProbeResult, error) {
	states, err := s.observeAll(ctx, in.Sites)
	if err != nil {
		return ProbeResult{}, err
	}
	var out ProbeResult
	for _, st := range states {
		if !st.Reachable {
			out.Unreachable = append(out.Unreachable, st)
		}
	}
	return out, nil
}

// watch subscribes to changes of the sites when the driver can tell them (deploy.Watcher), so
// WaitConverged observes again when a site changes instead of at its next poll; it returns nil,
// a channel that never receives, when the driver cannot, or the watch failed to start.
func (s *Sites) watch(ctx context.Context, expect []Expectation) <-chan struct{} {
	w, ok := s.Driver.(deploy.Watcher)
	if !ok {
		return nil
	}
	sites := make([]rollout.Site, len(expect))
	for i, e := range expect {
		sites[i] = e.Site
	}
	ch, err := w.Watch(ctx, sites)
	if err != nil {
		activity.GetLogger(ctx).Warn("cannot watch the sites; polling them instead", "error", err)
		return nil
	}
	return ch
}

// requestReconcile asks the site to apply its branch now, when the driver can, and reports
// whether that is done with. It is an optimisation: a failed request (the site is down) is
// logged and tried again on the next round, and Flux applies the commit at its next interval
// anyway.
func (s *Sites) requestReconcile(ctx context.Context, site rollout.Site) bool {
	r, ok := s.Driver.(deploy.Reconciler)
	if !ok {
		return true
	}
	if err := r.RequestReconcile(ctx, site); err != nil {
		activity.GetLogger(ctx).Warn("reconcile request failed; trying again next round", "site", site.Name, "error", err)
		return false
	}
	return true
}

// ObserveInput lists the sites to observe and the health checks to measure on each.
type ObserveInput struct {
	Sites  []rollout.Site
	Checks []rollout.Check `json:",omitempty"`
}

// ObserveResult holds one observation per site, in order.
type ObserveResult struct {
	States []rollout.SiteState
}

// Observe takes one observation of every site and measures the health checks on each (a
// health round during bake). Checks are measured only on a site whose Flux could be read:
// an unreachable site is Unknown whatever its metrics say.
func (s *Sites) Observe(ctx context.Context, in ObserveInput) (ObserveResult, error) {
	checker := s.Checker
	if checker == nil {
		checker = &deploy.Checker{}
	}
	// Stop measuring before the activity's deadline: a site not measured by then is reported
	// Unknown, which the workflow judges, instead of the whole round timing out.
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-deadlineMargin))
		defer cancel()
	}
	states, err := s.observeAll(ctx, in.Sites)
	if err != nil {
		return ObserveResult{}, err
	}
	out := ObserveResult{States: states}
	if len(in.Checks) == 0 {
		return out, nil
	}
	err = inParallel(len(in.Sites), func(i int) error {
		if st := &out.States[i]; st.Reachable && ctx.Err() == nil {
			st.Checks = append(st.Checks, checker.RunAll(ctx, in.Checks, in.Sites[i])...)
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, in.Sites[i].Name)
		}
		return nil
	})
	return out, err
}

// notObserved is the state of a site the round had no time left to observe.
func notObserved(site string) rollout.SiteState {
	return rollout.SiteState{Site: site, Message: "not observed: the health round ran out of time", ObservedAt: time.Now()}
}

// observeAll observes the sites: in one call when the driver reads many at once
// (deploy.BatchObserver: one request per cluster and namespace), else one by one,
// observeParallel at a time. A site left unobserved when ctx ends is Unknown ("not observed");
// an error is a driver's failure other than ctx's.
func (s *Sites) observeAll(ctx context.Context, sites []rollout.Site) ([]rollout.SiteState, error) {
	out := make([]rollout.SiteState, len(sites))
	if b, ok := s.Driver.(deploy.BatchObserver); ok {
		states, err := b.ObserveSites(ctx, sites)
		if err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("observe sites: %w", err)
		}
		for i, site := range sites {
			if err != nil {
				out[i] = notObserved(site.Name)
			} else {
				out[i] = states[i]
			}
		}
		return out, nil
	}
	err := inParallel(len(sites), func(i int) error {
		site := sites[i]
		if ctx.Err() != nil {
			out[i] = notObserved(site.Name)
			return nil
		}
		st, err := s.Driver.Observe(ctx, site)
		switch {
		case err != nil && ctx.Err() == nil:
			return fmt.Errorf("observe site %s: %w", site.Name, err)
		case err != nil:
			st = notObserved(site.Name)
		}
		out[i] = st
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, site.Name)
		}
		return nil
	})
	return out, err
}

// inParallel runs fn(0) … fn(n-1), observeParallel at a time, and joins their errors: a slow
// site or check must not hold up a round of hundreds.
func inParallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	slots := make(chan struct{}, observeParallel)
	for i := range n {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// HealthRoundInput lists the sites of a health round, the commit each should run (Expect[i]
// for Sites[i]) and the checks to measure. It runs as a local activity, whose input stays out
// of the workflow's history, so it may list thousands of sites.
type HealthRoundInput struct {
	Sites  []rollout.Site
	Expect []string
	Checks []rollout.Check `json:",omitempty"`
	// Detail is how many bytes of healthy observations (their measurements) the result may
	// carry besides the changes; 0 means none.
	Detail int `json:",omitempty"`
	// Report[i], when set, lists Sites[i] whatever its health: a site whose last status showed
	// a failed round or check, so its recovery reaches the status with fresh measurements.
	Report []bool `json:",omitempty"`
}

// HealthRoundResult is what a health round changed: the observations that are not healthy
// (rollout.SiteState.HealthyAt), and healthy ones while they fit in Detail bytes. A site of the
// input that is not listed was observed healthy at its commit. The result is recorded in the
// workflow's history on every round, so it stays small however large the wave.
type HealthRoundResult struct {
	States []rollout.SiteState `json:",omitempty"`
	// Healthy counts the sites observed healthy, listed or not; DetailBytes is about how many
	// bytes of healthy observations the result lists within Detail.
	Healthy     int
	DetailBytes int `json:",omitempty"`
}

// HealthRound observes the sites as Observe does and returns only what the workflow needs to
// know: the sites that are not healthy at their commit, and as many healthy observations as
// fit in Detail bytes, so a wave of thousands of sites adds a few bytes to its history per
// round, not every site's observation.
func (s *Sites) HealthRound(ctx context.Context, in HealthRoundInput) (HealthRoundResult, error) {
	if len(in.Expect) != len(in.Sites) {
		return HealthRoundResult{}, fmt.Errorf("health round: %d sites but %d expected commits", len(in.Sites), len(in.Expect))
	}
	obs, err := s.Observe(ctx, ObserveInput{Sites: in.Sites, Checks: in.Checks})
	if err != nil {
		return HealthRoundResult{}, err
	}
	countGateResults(ctx, obs.States)
	desc := &descendants{s: s}
	for i := range obs.States {
		desc.mark(ctx, &obs.States[i], in.Expect[i])
	}
	return RoundChanges(obs.States, in.Expect, in.Report, in.Detail), nil
}

// RoundChanges is the result of a health round that observed states, sites that should run expect
// (in the same order): every state not healthy at its commit or marked in report, and the
// other healthy ones while they fit in detail bytes.
func RoundChanges(states []rollout.SiteState, expect []string, report []bool, detail int) HealthRoundResult {
	var out HealthRoundResult
	for i, st := range states {
		healthy := st.HealthyAt(expect[i])
		if healthy {
			out.Healthy++
		}
		if !healthy || (i < len(report) && report[i]) {
			out.States = append(out.States, st)
			continue
		}
		if size := approxSize(st); size <= detail-out.DetailBytes {
			out.States = append(out.States, st)
			out.DetailBytes += size
		}
	}
	return out
}

// approxSize is about how many bytes an observation takes in JSON.
func approxSize(st rollout.SiteState) int {
	n := 120 + len(st.Site) + len(st.Revision) + len(st.Attempted) + len(st.Message)
	for _, c := range st.Checks {
		n += 80 + len(c.Name) + len(c.Threshold) + len(c.Message)
	}
	return n
}

// deadlineMargin is the time kept before an activity's deadline to report what was measured.
const deadlineMargin = 5 * time.Second

// observeParallel is how many sites a health or convergence round observes at once: a slow
// site or check must not make the round outlast its timeout.
const observeParallel = 32
