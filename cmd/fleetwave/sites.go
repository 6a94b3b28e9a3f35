package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// siteReport is one row of `fleetwave sites`, and its JSON form.
type siteReport struct {
	Site   string `json:"site"`
	Wave   string `json:"wave"`
	Branch string `json:"branch"`
	// Head is the site branch head in git; Applied is the commit Flux last applied.
	Head    string `json:"head,omitempty"`
	Applied string `json:"applied,omitempty"`
	// Source is the source commit the applied promotion carries (its Fleetwave-Source trailer).
	Source string `json:"source,omitempty"`
	// Running is the source commit the site runs: Source, under the name of its column.
	Running string `json:"running,omitempty"`
	// Target is the fleet's last succeeded commit (its latest rollout that succeeded, from
	// Temporal); State says how the site stands against it: InSync, Behind, Deferred (since
	// Since: its catch-up probes it), CatchingUp (its catch-up promotes it), Drifted (Flux
	// applied something else than the branch head); empty when Temporal cannot tell.
	Target  string    `json:"target,omitempty"`
	State   string    `json:"state,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	CatchUp string    `json:"catchUp,omitempty"`
	// Runs says whether the site runs --commit; absent without --commit.
	Runs    *bool                 `json:"runs,omitempty"`
	Drift   bool                  `json:"drift"`
	Flux    string                `json:"flux"`
	Verdict rollout.Verdict       `json:"verdict"`
	Message string                `json:"message,omitempty"`
	Checks  []rollout.CheckResult `json:"checks,omitempty"`
}

type sitesOptions struct {
	serve      serveOptions
	fleet      string
	commit     string
	kubeconfig string
	output     string
}

func newSitesCmd(g *globals) *cobra.Command {
	var o sitesOptions
	cmd := &cobra.Command{
		Use:   "sites",
		Short: "Show every site of the fleet: branch head, what Flux applied, readiness, health checks, drift",
		Long: `sites reads the plan from the fleet repo, then for every site: the head of its site branch,
the revision its Flux Kustomization last applied, Ready/Stalled with Flux's message, and the
current value of every health check in the plan. DRIFT marks a site whose applied revision
is not its branch head. With --commit, the plan is read at that commit and RUNS says whether
each site runs it.

From Temporal (TEMPORAL_ADDRESS; without it, these columns stay empty, with a warning):
RUNNING is the source commit a site runs, TARGET the fleet's last succeeded commit, and STATE
InSync, Behind, Deferred since when (offline; its catch-up probes it), CatchingUp (its
catch-up promotes it) or Drifted.

It exits 1 when any site is Degraded or Unknown, so scripts can use it as a gate.
Git credentials come from the same variables as serve; sites from the kubeconfig contexts
the plan names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runSites(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.serve.repo, "repo", "", "URL of the fleet repo")
	f.StringVar(&o.serve.sourceBranch, "source-branch", "main", "branch holding the plan")
	f.StringVar(&o.serve.sshKey, "ssh-key", "", "private key file for ssh:// and git@ repo URLs")
	f.StringVar(&o.fleet, "fleet", "", "the fleet's name in Temporal, for TARGET and STATE (default: the plan's metadata.name)")
	f.StringVar(&o.commit, "commit", "", "source commit to compare the sites with (default: the source branch head, without the RUNS column)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig files, separated like PATH (default $KUBECONFIG, else ~/.kube/config)")
	f.StringVarP(&o.output, "output", "o", "", "output format: text or json")
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

func runSites(ctx context.Context, g *globals, o sitesOptions) error {
	repo, err := gitops.Open(ctx, o.serve.repo, gitOptions(o.serve)...)
	if err != nil {
		return err
	}
	rev := o.serve.sourceBranch
	if o.commit != "" {
		rev = o.commit
	}
	info, err := repo.Commit(rev)
	if err != nil {
		return err
	}
	plan, err := activities.ReadPlan(repo, info.SHA, rollout.PlanFile+"@"+rollout.Short(info.SHA))
	if err != nil {
		return err
	}
	reports := inspectSites(ctx, repo, deploy.NewKube(o.kubeconfig), &deploy.Checker{}, plan)
	view, err := sitesView(ctx, g, cmp.Or(o.fleet, plan.Name))
	if err != nil {
		fmt.Fprintf(g.stderr, "warning: no TARGET or STATE: %v\n", err)
	}
	for i := range reports {
		reports[i].judge(view)
	}
	if o.commit != "" {
		for i := range reports {
			runs := reports[i].Source == info.SHA
			reports[i].Runs = &runs
		}
	}
	if done, err := writeJSON(g.stdout, o.output, siteList{TypeMeta: rollout.Meta(rollout.KindSiteList), Items: reports}); err != nil {
		return err
	} else if !done {
		printSites(g, reports, o.commit != "")
	}
	for _, r := range reports {
		if r.Verdict == rollout.VerdictDegraded || r.Verdict == rollout.VerdictUnknown {
			return errSilent
		}
	}
	return nil
}

// sitesView asks Temporal, within a few seconds, for the fleet's target and catch-ups.
func sitesView(ctx context.Context, g *globals, fleet string) (workflows.SitesView, error) {
	if fleet == "" {
		return workflows.SitesView{}, errors.New("the plan names no fleet (metadata.name): give --fleet")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	fw, tc, err := g.dialRollouts(ctx)
	if err != nil {
		return workflows.SitesView{}, err
	}
	defer tc.Close()
	return fw.SitesView(ctx, fleet)
}

// judge sets the site's RUNNING, TARGET and STATE from what Temporal knows of the fleet.
func (r *siteReport) judge(view workflows.SitesView) {
	r.Running, r.Target = r.Source, view.Target
	if cu, ok := view.CatchUps[r.Site]; ok {
		r.CatchUp = cu.ID
		if !cu.OfflineSince.IsZero() {
			r.State, r.Since = "Deferred", cu.OfflineSince
		} else {
			r.State = "CatchingUp"
		}
		return
	}
	switch {
	case r.Drift:
		r.State = "Drifted"
	case r.Target == "":
	case r.Source == r.Target:
		r.State = "InSync"
	default:
		r.State = "Behind"
	}
}

// inspectSites observes every site of the plan and measures its checks the way a health round
// does (activities.Sites.Observe), then adds what git says of each site; plan order.
func inspectSites(ctx context.Context, repo *gitops.Repo, driver deploy.Driver, checker *deploy.Checker, plan *rollout.Plan) []siteReport {
	waveOf := map[string]string{}
	for _, w := range plan.Waves {
		for _, s := range w.Sites {
			waveOf[s] = w.Name
		}
	}
	observed, err := (&activities.Sites{Driver: driver, Checker: checker}).Observe(ctx,
		activities.ObserveInput{Sites: plan.Sites, Checks: plan.Health.Checks})
	out := make([]siteReport, len(plan.Sites))
	for i, site := range plan.Sites {
		st := observed.States[i]
		if st.Site == "" && err != nil {
			st = rollout.SiteState{Site: site.Name, Message: err.Error()}
		}
		out[i] = siteReportOf(repo, plan, site, st)
		out[i].Wave = waveOf[site.Name]
	}
	return out
}

// siteReportOf judges one observation of a site against its branch in git.
func siteReportOf(repo *gitops.Repo, plan *rollout.Plan, site rollout.Site, st rollout.SiteState) siteReport {
	r := siteReport{Site: site.Name, Branch: plan.SiteBranchFor(site.Name)}
	if head, err := repo.Branch(r.Branch); err == nil {
		r.Head = head
	}
	r.Checks, r.Message = st.Checks, st.Message
	r.Applied = rollout.RevisionHash(st.Revision)
	if r.Applied != "" {
		if c, err := repo.Commit(r.Applied); err == nil {
			r.Source = c.Trailers[gitops.TrailerSource]
		}
	}
	r.Drift = st.Reachable && r.Applied != r.Head
	switch {
	case !st.Reachable:
		r.Flux = "Unknown"
	case st.Stalled:
		r.Flux = "Stalled"
	case st.Ready:
		r.Flux = "Ready"
	case st.Reconciling:
		r.Flux = "Reconciling"
	default:
		r.Flux = "NotReady"
	}
	r.Verdict = rollout.VerdictHealthy
	switch {
	case st.Unknown() != "":
		r.Verdict, r.Message = rollout.VerdictUnknown, st.Unknown()
	case st.Stalled || (!st.Ready && !st.Reconciling):
		r.Verdict = rollout.VerdictDegraded
	case st.Reconciling:
		r.Verdict = rollout.VerdictConverging
	}
	for _, c := range st.Checks {
		if !c.OK && !c.Unknown && r.Verdict != rollout.VerdictUnknown {
			r.Verdict = rollout.VerdictDegraded
		}
	}
	return r
}

func printSites(g *globals, reports []siteReport, withRuns bool) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	header := "SITE\tWAVE\tBRANCH HEAD\tAPPLIED\tRUNNING\tTARGET\tSTATE\tDRIFT\tFLUX\tVERDICT\tCHECKS\tMESSAGE"
	if withRuns {
		header = "SITE\tWAVE\tBRANCH HEAD\tAPPLIED\tRUNNING\tTARGET\tSTATE\tRUNS\tDRIFT\tFLUX\tVERDICT\tCHECKS\tMESSAGE"
	}
	fmt.Fprintln(tw, header)
	for _, r := range reports {
		drift := "-"
		if r.Drift {
			drift = "DRIFT"
		}
		state := r.State
		if !r.Since.IsZero() {
			state += " since " + r.Since.UTC().Format(time.RFC3339)
		}
		row := []string{r.Site, r.Wave, short(r.Head), short(r.Applied), short(r.Running), short(r.Target), dash(state)}
		if withRuns {
			row = append(row, fmt.Sprint(*r.Runs))
		}
		msg := r.Message
		if r.Verdict == rollout.VerdictHealthy {
			msg = "" // Flux's "Applied revision: ..." adds nothing to the columns
		}
		row = append(row, drift, r.Flux, string(r.Verdict), dash(formatChecks(r.Checks)), dash(msg))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
}

func short(sha string) string { return dash(rollout.Short(sha)) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
