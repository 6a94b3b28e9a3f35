package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/policy"
)

func newPlanCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "plan", Short: "Check and show rollout plans"}
	cmd.AddCommand(newPlanValidateCmd(g), newPlanShowCmd(g))
	return cmd
}

func loadPlanFile(path string) (*rollout.Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The plan's site files are read from the folder it is in, the root of the fleet repo.
	return rollout.ParsePlanFS(path, data, os.DirFS(filepath.Dir(path)))
}

func newPlanValidateCmd(g *globals) *cobra.Command {
	var kubeconfig string
	var againstSites bool
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Validate plan files; prints file:line:col for every problem and exits 1 if any",
		Long: `validate checks plan files: syntax, fields, wave membership, health checks, and the Rego
policies in the .fleetwave/policies folder next to each plan (they must compile, in the sandbox
the worker runs them in).

With --kubeconfig (or --sites, which uses $KUBECONFIG), it also checks every site against its
cluster: the kubeconfig context exists, and the Flux Kustomization exists and can be read.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var kube *deploy.Kube
			if kubeconfig != "" || againstSites {
				kube = deploy.NewKube(kubeconfig)
			}
			failed := false
			for _, path := range args {
				p, err := loadPlanFile(path)
				if err != nil {
					failed = true
					fmt.Fprintln(g.stderr, err)
					continue
				}
				if problems := checkPolicies(cmd.Context(), path); len(problems) > 0 {
					failed = true
					for _, line := range problems {
						fmt.Fprintln(g.stderr, line)
					}
					continue
				}
				if kube != nil {
					if err := activities.ValidateSites(cmd.Context(), strictValidator{kube}, p); err != nil {
						failed = true
						for _, line := range strings.Split(err.Error(), "\n") {
							fmt.Fprintf(g.stderr, "%s: %s\n", path, line)
						}
						continue
					}
				}
				for _, w := range p.Warnings {
					fmt.Fprintf(g.stderr, "%s:%d:%d: warning: %s\n", path, w.Line, w.Column, w.Message)
				}
				fmt.Fprintf(g.stdout, "%s: valid: %s in %s\n", path, rollout.Count(len(p.Sites), "site"), rollout.Count(len(p.Waves), "wave"))
			}
			if failed {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "also check every site against its cluster, with these kubeconfig files (separated like PATH)")
	cmd.Flags().BoolVar(&againstSites, "sites", false, "also check every site against its cluster, with $KUBECONFIG or ~/.kube/config")
	return cmd
}

// checkPolicies compiles the Rego policies next to the plan file, as the worker will, and
// returns their problems ("file:line:col: message"); none when there are no policies.
func checkPolicies(ctx context.Context, planPath string) []string {
	files, err := readPolicyDir(filepath.Join(filepath.Dir(planPath), rollout.PolicyDir))
	if err != nil {
		return []string{err.Error()}
	}
	if len(files) == 0 {
		return nil
	}
	if _, err := policy.Compile(ctx, files); err != nil {
		var pe *policy.Error
		if errors.As(err, &pe) {
			return pe.Problems
		}
		return []string{err.Error()}
	}
	return nil
}

// previewPolicies evaluates the plan's policies (built-in, and the .rego files of the policy
// folder next to the plan file) for a rollout started at `at` (RFC 3339; "" means now). It
// returns nil when the plan has no policies.
func previewPolicies(ctx context.Context, p *rollout.Plan, planPath, at string) ([]policy.WavePreview, error) {
	start := time.Now().UTC().Truncate(time.Second)
	if at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return nil, usagef("--at %q: use an RFC 3339 time like 2026-11-27T09:00:00Z", at)
		}
		start = t
	}
	files, err := readPolicyDir(filepath.Join(filepath.Dir(planPath), rollout.PolicyDir))
	if err != nil {
		return nil, err
	}
	if p.Policies.Empty() && len(files) == 0 {
		return nil, nil
	}
	if len(files) > 0 {
		if _, err := policy.Compile(ctx, files); err != nil {
			return nil, err
		}
	}
	return policy.Preview(ctx, p, files, start), nil
}

func describePreview(pv policy.WavePreview) string {
	switch pv.Outcome {
	case rollout.PolicyAllow:
		return "starts " + pv.Start.UTC().Format(time.RFC3339)
	case rollout.PolicyWait:
		return fmt.Sprintf("waits, starts %s: %s", pv.Start.UTC().Format(time.RFC3339), strings.Join(pv.Reasons, "; "))
	case rollout.PolicyDeny:
		return "denied: " + strings.Join(pv.Reasons, "; ")
	}
	return pv.Outcome
}

// strictValidator makes an unreachable site a validation failure: a user who asks to check
// the plan against the clusters wants to hear that one could not be checked.
type strictValidator struct{ kube *deploy.Kube }

func (v strictValidator) Validate(ctx context.Context, site rollout.Site) error {
	err := v.kube.Validate(ctx, site)
	if errors.Is(err, deploy.ErrUnreachable) {
		// Not wrapped, so ValidateSites reports it instead of letting it pass.
		return fmt.Errorf("%v (cannot check it)", err)
	}
	return err
}

// planView is the JSON form of `plan show`.
type planView struct {
	rollout.TypeMeta
	Fleet        string     `json:"fleet,omitempty"`
	SourceBranch string     `json:"sourceBranch"`
	Waves        []waveView `json:"waves"`
}

type waveView struct {
	Name string `json:"name"`
	// Rule says how the wave's sites were chosen: "selector {tier=canary}", "1% of 300 sites
	// (3), spread by region", "sites listed", "the remaining sites".
	Rule        string     `json:"rule"`
	Sites       []siteView `json:"sites"`
	MaxParallel int        `json:"maxParallel"`
	Bake        string     `json:"bake"`
	// Gate is the least the wave's health gate takes once its last batch converged.
	Gate    string     `json:"gate"`
	Batches [][]string `json:"batches"`
	// MaxFailures is the wave's failure budget as the plan writes it ("2", "5%"), and
	// FailuresAllowed what it allows for the wave's sites.
	MaxFailures     string `json:"maxFailures,omitempty"`
	FailuresAllowed int    `json:"failuresAllowed,omitempty"`
	// Approval is the wave's approval, if it needs one.
	Approval *approvalView `json:"approval,omitempty"`
	// Policy is the decision the policies would make for a rollout started at --at.
	Policy *policy.WavePreview `json:"policy,omitempty"`
}

type approvalView struct {
	Approvers []string `json:"approvers"`
	Quorum    int      `json:"quorum"`
	Timeout   string   `json:"timeout"`
	OnTimeout string   `json:"onTimeout"`
	// RemindBefore is how long before the request expires the thread gets a reminder.
	RemindBefore string `json:"remindBefore,omitempty"`
}

type siteView struct {
	Name   string            `json:"name"`
	Branch string            `json:"branch"`
	Labels map[string]string `json:"labels,omitempty"`
	// From is where the site is defined: the plan file, or a site file and line.
	From string `json:"from"`
}

func newPlanShowCmd(g *globals) *cobra.Command {
	var output, at string
	var perSite bool
	cmd := &cobra.Command{
		Use:   "show [FILE]",
		Short: "Show the waves of a plan and the sites each one promotes (default ./fleetwave.yaml)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := rollout.PlanFile
			if len(args) == 1 {
				path = args[0]
			}
			p, err := loadPlanFile(path)
			var pe *rollout.PlanError
			if errors.As(err, &pe) {
				fmt.Fprintln(g.stderr, err)
				return errSilent
			}
			if err != nil {
				return err
			}
			previews, err := previewPolicies(cmd.Context(), p, path, at)
			if err != nil {
				fmt.Fprintln(g.stderr, err)
				return errSilent
			}
			v := planView{TypeMeta: rollout.Meta(kindPlanSummary), Fleet: p.Name, SourceBranch: p.SourceBranch}
			budgets := false
			for i, w := range p.Waves {
				wv := waveView{Name: w.Name, Rule: waveRule(w, len(p.Sites)), MaxParallel: w.MaxParallel, Bake: w.Bake.String(), Gate: p.Health.ShortestGate(w.Bake), Batches: w.Batches()}
				if w.MaxFailures != (rollout.FailureBudget{}) {
					wv.MaxFailures, wv.FailuresAllowed = w.MaxFailures.String(), w.MaxFailures.Allowed(len(w.Sites))
					budgets = true
				}
				if a := w.Approval; a != nil {
					wv.Approval = &approvalView{Approvers: a.Approvers, Quorum: a.Quorum, Timeout: a.Timeout.String(), OnTimeout: a.OnTimeout}
					if a.RemindBefore > 0 {
						wv.Approval.RemindBefore = a.RemindBefore.String()
					}
				}
				if wv.MaxParallel == 0 {
					wv.MaxParallel = len(w.Sites)
				}
				for _, name := range w.Sites {
					s, _ := p.Site(name)
					wv.Sites = append(wv.Sites, siteView{Name: name, Branch: p.SiteBranchFor(name), Labels: s.Labels, From: cmp.Or(s.From, path)})
				}
				if previews != nil {
					wv.Policy = &previews[i]
				}
				v.Waves = append(v.Waves, wv)
			}
			if done, err := writeJSON(g.stdout, output, v); done || err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			if perSite {
				fmt.Fprintln(tw, "SITE\tWAVE\tRULE\tBRANCH\tFROM")
				for _, w := range v.Waves {
					for _, s := range w.Sites {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, w.Name, w.Rule, s.Branch, s.From)
					}
				}
				return tw.Flush()
			}
			header := "WAVE\tSITES\tMAX PARALLEL\tBAKE\tGATE\tBRANCHES"
			if budgets {
				header += "\tMAX FAILURES"
			}
			if p.HasApprovals() {
				header += "\tAPPROVAL"
			}
			if previews != nil {
				header += "\tPOLICY"
			}
			fmt.Fprintln(tw, header)
			for _, w := range v.Waves {
				var names, branches []string
				for _, s := range w.Sites {
					names, branches = append(names, s.Name), append(branches, s.Branch)
				}
				line := fmt.Sprintf("%s\t%s\t%d\t%s\t%s\t%s", w.Name, strings.Join(names, ","), w.MaxParallel, w.Bake, w.Gate, strings.Join(branches, ","))
				switch {
				case w.MaxFailures != "":
					line += fmt.Sprintf("\t%s (%s)", w.MaxFailures, rollout.Count(w.FailuresAllowed, "site"))
				case budgets:
					line += "\t0"
				}
				switch a := w.Approval; {
				case a != nil:
					line += fmt.Sprintf("\t%d of %s within %s, else %s", a.Quorum, strings.Join(a.Approvers, ","), a.Timeout, a.OnTimeout)
				case p.HasApprovals():
					line += "\t-"
				}
				if w.Policy != nil {
					line += "\t" + describePreview(*w.Policy)
				}
				fmt.Fprintln(tw, line)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&at, "at", "", "evaluate the policies as if the rollout started at this RFC 3339 time (default now)")
	cmd.Flags().BoolVar(&perSite, "sites", false, "list every site: its wave, the wave's rule, its branch and the file that defines it")
	return cmd
}

// waveRule says how a wave's sites were chosen, for plan show.
func waveRule(w rollout.Wave, fleet int) string {
	var parts []string
	if w.Percent > 0 {
		parts = append(parts, fmt.Sprintf("%g%% of %s (%d)", w.Percent, rollout.Count(fleet, "site"), rollout.PercentOf(w.Percent, fleet)))
	}
	if len(w.Selector) > 0 {
		parts = append(parts, "selector "+rollout.FormatSelector(w.Selector))
	}
	if w.Spread != "" {
		parts = append(parts, "spread by "+w.Spread)
	}
	switch {
	case w.Explicit != nil:
		return "sites listed"
	case len(parts) == 0:
		return "the remaining sites"
	}
	return strings.Join(parts, ", ")
}

func parseSamplePlan(data string) (*rollout.Plan, error) {
	return rollout.ParsePlan("sample/fleetwave.yaml", []byte(data))
}

func replaceOnce(s, old, new string) string { return strings.Replace(s, old, new, 1) }
