package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy/sim"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gitserver"
	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

type rehearseOptions struct {
	plan           string
	sites, regions int
	faults         string
	scale          float64
	reports        []string
	approve        string
	temporalBin    string
	logLevel       string
	keepRepo       string
	catchUpTimeout time.Duration
}

func newRehearseCmd(g *globals) *cobra.Command {
	var o rehearseOptions
	cmd := &cobra.Command{
		Use:   "rehearse [--plan FILE | --sites N --regions R] [--faults FILE] [--time-scale K] [--report FILE.json] [--report FILE.md]",
		Short: "Run one rollout of a plan on a simulated fleet with scripted faults, and report what happened",
		Long: `rehearse runs the real rollout workflows on this machine against a simulated fleet: an
embedded Temporal dev server, a local git server seeded with a fleet repo for the plan (its
site branches created), the simulated sites and the worker. It rolls out one commit, applies
the faults of --faults on the way, and stops everything when the rollout ends. It never
touches a cluster or a remote git server: sites that name a cluster context are simulated in
their place, and health checks are left out (the simulated sites have their own).

--time-scale K divides the plan's durations (bakes, soaks, approval timeouts, health interval
and timeouts) and the faults' times by K; the report gives times on the plan's scale.

It exits 0 when the rehearsal ran, whatever the rollout's outcome (the last line and the
report say it), and 1 on bad input or when the rehearsal itself failed. See docs/rehearse.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("log-level") {
				g.logLevel = "warn" // the progress lines are the output; the stack's logs only when asked
			}
			o.logLevel = g.logLevel
			return runRehearse(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.plan, "plan", "", "the plan file to rehearse, as it is in the fleet repo (its .fleetwave/policies beside it come along)")
	f.IntVar(&o.sites, "sites", 0, "generate a plan of this many sites (instead of --plan)")
	f.IntVar(&o.regions, "regions", 3, "with --sites: how many regions the sites are spread over")
	f.StringVar(&o.faults, "faults", "", "a RehearsalFaults file: what happens to which sites, and when")
	f.Float64Var(&o.scale, "time-scale", 60, "divide every duration of the plan and the faults by this (1: real time)")
	f.StringArrayVar(&o.reports, "report", nil, "write the report to this file: .json or .md (repeatable)")
	f.StringVar(&o.approve, "approve", "auto", "what the rehearsal answers to approval requests: auto (approve) or reject")
	f.StringVar(&o.keepRepo, "keep-repo", "", "copy the fleet repo the rehearsal pushed to into this new directory (a bare git repository), to read its commits with git")
	f.DurationVar(&o.catchUpTimeout, "catch-up-timeout", time.Hour, "after a rollout that succeeded with deferred sites, wait this long on the plan's clock for their catch-ups before the report (0: do not wait)")
	f.StringVar(&o.temporalBin, "temporal", "", "the Temporal CLI binary (default: $FLEETWAVE_TEMPORAL, .tools/bin/temporal, or temporal on PATH)")
	return cmd
}

func runRehearse(ctx context.Context, g *globals, o rehearseOptions) error {
	if o.approve != "auto" && o.approve != "reject" {
		return usagef("--approve %q: use auto or reject", o.approve)
	}
	for _, r := range o.reports {
		if ext := filepath.Ext(r); ext != ".json" && ext != ".md" {
			return usagef("--report %s: name a .json or a .md file", r)
		}
	}
	if o.keepRepo != "" {
		if _, err := os.Stat(o.keepRepo); err == nil {
			return usagef("--keep-repo %s: the directory exists; name a new one", o.keepRepo)
		}
	}
	in, err := loadRehearsal(o)
	if err != nil {
		return err
	}
	log, err := newLogger(g)
	if err != nil {
		return err
	}
	r, err := startRehearsal(ctx, log, g.stderr, in, o)
	if err != nil {
		return err
	}
	defer r.stop()
	rep, err := r.run(ctx, g)
	if err != nil {
		return err
	}
	for _, path := range o.reports {
		if err := rep.write(path); err != nil {
			return err
		}
	}
	if o.keepRepo != "" {
		if err := os.CopyFS(o.keepRepo, os.DirFS(r.repoDir)); err != nil {
			return fmt.Errorf("--keep-repo %s: %w", o.keepRepo, err)
		}
	}
	fmt.Fprintln(g.stdout, rep.outcome())
	return nil
}

// rehearsal is the running stack of one rehearsal.
type rehearsal struct {
	in    *rehearsalInput
	opts  rehearseOptions
	log   *slog.Logger
	tc    client.Client
	fw    *workflows.Client
	fleet *sim.Fleet
	gs    *gitserver.Server
	// repoDir is the fleet repo on the git server; seed its first commit.
	repoDir, seed string
	commit        string
	fleetNm       string
	stops         []func()
	rejected      *rejecter
	// worker is the worker process; workerArgs start another.
	worker     *exec.Cmd
	workerArgs []string
	stderr     io.Writer
	// restarts are when restartWorker faults killed the worker, on the rehearsal's clock.
	restarts []time.Time
}

func (r *rehearsal) stop() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
}

// rehearsalRepo is the fleet repo's name on the rehearsal's git server.
const rehearsalRepo = "fleet"

// startRehearsal starts the stack: Temporal, the git server seeded with the plan, the
// simulated fleet running the faults, and the worker.
func startRehearsal(ctx context.Context, log *slog.Logger, stderr io.Writer, in *rehearsalInput, o rehearseOptions) (_ *rehearsal, err error) {
	r := &rehearsal{in: in, opts: o, log: log, stderr: stderr, fleetNm: cmp.Or(in.plan.Name, rehearsalRepo)}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	data, err := os.MkdirTemp("", "fleetwave-rehearse-")
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, func() { _ = os.RemoveAll(data) })

	// FastQueues: under a time scale, the dev server's 50 ms per step would stretch a rehearsal
	// by minutes of plan time that a production cluster does not add.
	ts, err := devtemporal.Start(ctx, devtemporal.Options{Binary: o.temporalBin, Headless: true, SearchAttributes: workflows.SearchAttributes,
		DynamicConfig: devtemporal.FastQueues})
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, ts.Stop)

	// The git server: the plan at the first commit, on main and every site branch; the
	// rollout's commit on top of main.
	r.rejected = &rejecter{}
	for _, f := range in.faults.Faults {
		if f.RejectPushes != nil {
			r.rejected.left += f.RejectPushes.Count
		}
	}
	r.gs, err = gitserver.New(filepath.Join(data, "git"), gitserver.WithLogger(log), gitserver.WithPushGate(r.rejected.gate))
	if err != nil {
		return nil, err
	}
	r.rejected.srv, r.rejected.log = r.gs, log
	dir, err := r.gs.Init(rehearsalRepo)
	if err != nil {
		return nil, err
	}
	files := map[string]string{rollout.PlanFile: string(in.planText), "apps/app.yaml": "version: 1\n"}
	for path, content := range in.policies {
		files[path] = content
	}
	var branches []string
	for _, s := range in.plan.Sites {
		branches = append(branches, in.plan.SiteBranchFor(s.Name))
	}
	if in.plan.SourceBranch != "main" {
		branches = append(branches, in.plan.SourceBranch)
	}
	r.repoDir = dir
	if r.seed, err = gitserver.Seed(dir, files, branches...); err != nil {
		return nil, err
	}
	var source []string // Commit writes on main, and on the source branch when it is another
	if in.plan.SourceBranch != "main" {
		source = append(source, in.plan.SourceBranch)
	}
	if r.commit, err = gitserver.Commit(dir, "app v2: the rehearsed change", map[string]string{"apps/app.yaml": "version: 2\n"}, source...); err != nil {
		return nil, err
	}
	gitURL, stopGit, err := gitserver.Listen("127.0.0.1:0", r.gs)
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, stopGit)
	repoURL := gitURL + "/" + rehearsalRepo + ".git"
	follower, err := gitops.Open(ctx, repoURL)
	if err != nil {
		return nil, err
	}

	r.tc, err = dialRehearsalTemporal(ctx, log, ts.Address)
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, r.tc.Close)
	r.fw = workflows.NewClient(r.tc, "")

	// The script's time zero is set again when the rollout starts.
	simCtx, cancelSim := context.WithCancel(context.Background())
	script := sim.Script{Faults: in.faults.Faults, Commit: r.commit, Start: time.Now(), Scale: o.scale}
	var simDone func()
	r.fleet, simDone = startSimFleet(simCtx, follower, in.plan, log, sim.WithPoll(50*time.Millisecond),
		sim.WithReconcileDelay(0), sim.WithScript(script))
	r.stops = append(r.stops, func() { cancelSim(); simDone() })
	if err := r.fleet.CheckScript(); err != nil {
		return nil, err
	}

	// The fleet serves its sites to the worker, which runs in a process of its own so that a
	// restartWorker fault can kill it (kill -9) and start another.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fleetSrv := &http.Server{Handler: r.fleet.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = fleetSrv.Serve(ln) }()
	r.stops = append(r.stops, func() { _ = fleetSrv.Close() })
	r.workerArgs = []string{"rehearse-worker", "--temporal", ts.Address, "--repo", repoURL, "--fleet-url", "http://" + ln.Addr().String(),
		"--fleet", r.fleetNm, "--source-branch", in.plan.SourceBranch, "--time-scale", strconv.FormatFloat(o.scale, 'g', -1, 64),
		"--log-level", o.logLevel}
	if err := r.startWorker(); err != nil {
		return nil, err
	}
	r.stops = append(r.stops, r.stopWorker)
	return r, nil
}

// startWorker starts the worker process.
func (r *rehearsal) startWorker() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("rehearsal worker: %w", err)
	}
	cmd := exec.Command(exe, r.workerArgs...)
	cmd.Stdout, cmd.Stderr = r.stderr, r.stderr
	cmd.SysProcAttr = devtemporal.ChildAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("rehearsal worker: %w", err)
	}
	r.worker = cmd
	return nil
}

// killWorker kills the worker with SIGKILL, as a crash would, and waits for it to be gone.
func (r *rehearsal) killWorker() {
	if r.worker == nil {
		return
	}
	_ = r.worker.Process.Kill()
	_ = r.worker.Wait()
	r.worker = nil
}

// stopWorker stops the worker in order.
func (r *rehearsal) stopWorker() {
	if r.worker == nil {
		return
	}
	_ = r.worker.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.worker.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.worker.Process.Kill()
		<-done
	}
	r.worker = nil
}

// dialRehearsalTemporal connects to the rehearsal's own dev server, in its default namespace,
// whatever the TEMPORAL_* environment says about the user's other clusters.
func dialRehearsalTemporal(ctx context.Context, log *slog.Logger, address string) (client.Client, error) {
	return client.DialContext(ctx, client.Options{HostPort: address, Namespace: "default", Logger: tlog.NewStructuredLogger(log),
		DataConverter: workflows.DataConverter(), FailureConverter: workflows.FailureConverter()})
}

// rehearsalAdapt is what a rehearsal's worker does to every plan it loads: the durations
// scaled, and the health checks left out (they would reach real endpoints; the simulated sites
// have their own).
func rehearsalAdapt(scale float64) func(*rollout.Plan) *rollout.Plan {
	return func(p *rollout.Plan) *rollout.Plan {
		p = p.Scaled(scale)
		if len(p.Health.Checks) > 0 {
			q := *p
			q.Health.Checks = nil
			p = &q
		}
		return p
	}
}

type rehearseWorkerOptions struct {
	temporal, repo, fleetURL, fleet, sourceBranch string
	scale                                         float64
}

// newRehearseWorkerCmd is the worker process of a rehearsal (hidden): it observes the
// rehearsal's simulated fleet over HTTP and writes its git server.
func newRehearseWorkerCmd(g *globals) *cobra.Command {
	var o rehearseWorkerOptions
	cmd := &cobra.Command{
		Use:    "rehearse-worker",
		Short:  "The worker process of fleetwave rehearse",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			log, err := newLogger(g)
			if err != nil {
				return err
			}
			tc, err := dialRehearsalTemporal(ctx, log, o.temporal)
			if err != nil {
				return err
			}
			defer tc.Close()
			writer, err := gitops.Open(ctx, o.repo, gitops.WithLogger(log))
			if err != nil {
				return err
			}
			n := newNode(log, tc, nil, o.fleet, "", o.sourceBranch, nil)
			n.adapt = rehearsalAdapt(o.scale)
			n.activityContext = activities.WithTimeScale(context.Background(), o.scale)
			w, err := n.startWorker(writer, &sim.Remote{URL: o.fleetURL}, 50*time.Millisecond)
			if err != nil {
				return err
			}
			defer w.Stop()
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.temporal, "temporal", "", "the Temporal frontend")
	f.StringVar(&o.repo, "repo", "", "the fleet repo")
	f.StringVar(&o.fleetURL, "fleet-url", "", "the simulated fleet's HTTP endpoint")
	f.StringVar(&o.fleet, "fleet", "", "the fleet's name")
	f.StringVar(&o.sourceBranch, "source-branch", "main", "the source branch")
	f.Float64Var(&o.scale, "time-scale", 1, "the rehearsal's time scale")
	return cmd
}

// rejecter is the git server's push gate for the rejectPushes faults: someone else writes to
// the first branch of each of the next pushes just before it lands.
type rejecter struct {
	mu       sync.Mutex
	left     int
	rejected int
	srv      *gitserver.Server
	log      *slog.Logger
}

func (j *rejecter) gate(repo string, req *http.Request) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.left <= 0 {
		return 0
	}
	refs, err := gitserver.PushRefs(req)
	if err != nil || len(refs) == 0 {
		return 0
	}
	if _, err := j.srv.WriteAsSomeoneElse(repo, refs[0]); err != nil {
		j.log.Warn("rehearsal: cannot write as someone else", "ref", refs[0], "error", err)
		return 0
	}
	j.left--
	j.rejected++
	return 0
}

// take attributes up to n of the rejected pushes to one rejectPushes fault, in file order.
func (j *rejecter) take(n int) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n = min(n, j.rejected)
	j.rejected -= n
	return n
}

// run starts the rollout, answers its approval requests, prints its progress and returns the
// report once it ended.
func (r *rehearsal) run(ctx context.Context, g *globals) (*rehearsalReport, error) {
	start := time.Now()
	r.fleet.StartScript(start)
	run, err := r.fw.Start(ctx, workflows.RolloutInput{Fleet: r.fleetNm, Commit: r.commit})
	if err != nil {
		return nil, err
	}
	id := run.GetID()
	fmt.Fprintf(g.stdout, "rehearsing %s: %s in %s, time scale %g, %s\n", r.in.source, rollout.Count(len(r.in.plan.Sites), "site"),
		rollout.Count(len(r.in.plan.Waves), "wave"), r.opts.scale, rollout.Count(len(r.in.faults.Faults), "fault"))
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, nil) }()
	p := &rehearsalProgress{w: g.stdout, scale: r.opts.scale, start: start, bar: isTerminal(g.stdout)}
	voted := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// The restartWorker faults, soonest first.
	var restarts []time.Time
	for _, f := range r.in.faults.Faults {
		if f.RestartWorker != nil {
			restarts = append(restarts, start.Add(rollout.ScaleDown(f.RestartWorker.At, r.opts.scale)))
		}
	}
	slices.SortFunc(restarts, func(a, b time.Time) int { return a.Compare(b) })
	// restart fires at the next of them; nil when none is left.
	var restart <-chan time.Time
	if len(restarts) > 0 {
		restart = time.After(time.Until(restarts[0]))
	}
	var result error
loop:
	for {
		select {
		case result = <-done:
			break loop
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-restart:
			restarts, restart = restarts[1:], nil
			if len(restarts) > 0 {
				restart = time.After(time.Until(restarts[0]))
			}
			r.killWorker()
			r.restarts = append(r.restarts, time.Now())
			fmt.Fprintf(g.stdout, "%s worker killed (kill -9) and started again\n", planClock(time.Since(start), r.opts.scale))
			if err := r.startWorker(); err != nil {
				return nil, err
			}
			continue
		case <-tick.C:
		}
		st, err := r.fw.Status(ctx, id)
		if err != nil {
			continue // not queryable yet
		}
		p.show(st)
		r.answerApprovals(ctx, id, st, voted)
	}
	st, err := r.fw.Status(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("rehearsal: the rollout's final status: %w (it ended with %v)", err, result)
	}
	p.show(st)
	end := time.Now()
	catchUps, err := r.awaitCatchUps(ctx, g.stdout, st, start)
	if err != nil {
		return nil, err
	}
	rep, err := r.report(ctx, id, st, start, end)
	if err != nil {
		return nil, err
	}
	rep.Rehearsal.CatchUps = catchUps
	return rep, nil
}

// awaitCatchUps waits, up to --catch-up-timeout on the plan's clock, for the catch-ups of the
// sites a rollout that succeeded deferred, and says how each ended; one still running when
// the time is up is reported in the state it is in.
func (r *rehearsal) awaitCatchUps(ctx context.Context, w io.Writer, st rollout.Status, start time.Time) ([]catchUpSummary, error) {
	sites := st.DeferredSites()
	if st.State != rollout.StateSucceeded || len(sites) == 0 || r.opts.catchUpTimeout <= 0 {
		return nil, nil
	}
	clock := func() string { return planClock(time.Since(start), r.opts.scale) }
	fmt.Fprintf(w, "%s waiting up to %s for the catch-ups of %s\n", clock(), r.opts.catchUpTimeout, rollout.SitesLabel(sites))
	deadline := time.Now().Add(rollout.ScaleDown(r.opts.catchUpTimeout, r.opts.scale))
	found := make(map[string]rollout.Status, len(sites))
	shown := map[string]string{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		done := 0
		for _, site := range sites {
			if cs, ok := found[site]; ok && cs.State.Done() {
				done++
				continue
			}
			cs, err := r.fw.Status(ctx, workflows.CatchUpID(r.fleetNm, site))
			if err != nil {
				continue // not started yet, or between runs
			}
			found[site] = cs
			line := fmt.Sprintf("catch-up of %s %s", site, cs.State)
			if v := cs.CatchUpVerdict(); v != "" {
				line += ": " + string(v)
			}
			if len(cs.Waves) > 0 && cs.State == rollout.StateWaiting && cs.Waves[0].Message != "" {
				line += " (" + cs.Waves[0].Message + ")" // held by a policy
			}
			if shown[site] != line {
				shown[site] = line
				fmt.Fprintf(w, "%s %s\n", clock(), line)
			}
			if cs.State.Done() {
				done++
			}
		}
		if done == len(sites) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	out := make([]catchUpSummary, 0, len(sites))
	for _, site := range sites {
		cs, ok := found[site]
		if !ok {
			out = append(out, catchUpSummary{Site: site, Commit: st.Commit, State: "NotStarted"})
			continue
		}
		c := catchUpSummary{Site: site, Commit: cs.Commit, State: cs.State, Verdict: cs.CatchUpVerdict(), Reason: cs.Reason}
		if cs.State.Done() && !cs.FinishedAt.IsZero() {
			c.At = planDuration(cs.FinishedAt.Sub(start), r.opts.scale).Round(time.Second).String()
		}
		out = append(out, c)
	}
	return out, nil
}

// answerApprovals votes on every open approval request, once per wave, as --approve says.
func (r *rehearsal) answerApprovals(ctx context.Context, id string, st rollout.Status, voted map[string]bool) {
	for _, w := range st.Waves {
		a := w.Approval
		if a == nil || a.Outcome != "" || voted[w.Name] || len(a.Eligible) == 0 {
			continue
		}
		voted[w.Name] = true
		action, voters := workflows.UpdateApprove, a.Eligible[:min(a.Quorum, len(a.Eligible))]
		if r.opts.approve == "reject" {
			action, voters = workflows.UpdateReject, a.Eligible[:1]
		}
		for _, by := range voters {
			if _, err := r.fw.Vote(ctx, id, action, workflows.VoteInput{Wave: w.Name, By: by, Via: workflows.ViaCLI,
				Comment: "rehearsal: --approve " + r.opts.approve}); err != nil && !errors.Is(err, context.Canceled) {
				r.log.Warn("rehearsal: vote refused", "wave", w.Name, "by", by, "error", err)
			}
		}
	}
}

// rehearsalProgress prints one line per change of a wave: its state and its sites by verdict,
// with times on the plan's scale.
type rehearsalProgress struct {
	w     io.Writer
	scale float64
	start time.Time
	// bar adds a progress bar to each line (on a terminal).
	bar  bool
	last map[string]string
}

func (p *rehearsalProgress) show(st rollout.Status) {
	if p.last == nil {
		p.last = map[string]string{}
	}
	for _, w := range st.Waves {
		if w.State == "" || w.State == rollout.StatePending && w.StartedAt.IsZero() {
			continue
		}
		line := fmt.Sprintf("wave %s %s: %s", w.Name, w.State, verdictCounts(w))
		if p.bar {
			line = fmt.Sprintf("%-40s %s", line, progress(w, 20))
		}
		if p.last[w.Name] == line {
			continue
		}
		p.last[w.Name] = line
		fmt.Fprintf(p.w, "%s %s\n", planClock(time.Since(p.start), p.scale), line)
	}
}

// verdictCounts lists a wave's sites by verdict: "3 Healthy, 1 Degraded".
func verdictCounts(w rollout.WaveStatus) string {
	counts := map[rollout.Verdict]int{}
	var order []rollout.Verdict
	for _, s := range w.Sites {
		if counts[s.Verdict] == 0 {
			order = append(order, s.Verdict)
		}
		counts[s.Verdict]++
	}
	parts := make([]string, len(order))
	for i, v := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[v], v)
	}
	return strings.Join(parts, ", ")
}

// planClock formats a real duration of the rehearsal on the plan's scale: "t+01:05:30".
func planClock(d time.Duration, scale float64) string {
	d = planDuration(d, scale).Round(time.Second)
	return fmt.Sprintf("t+%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// planDuration converts a real duration of the rehearsal to the plan's scale.
func planDuration(d time.Duration, scale float64) time.Duration {
	return time.Duration(float64(d) * max(scale, 1))
}
