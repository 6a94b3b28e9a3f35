package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

type checkOptions struct {
	serve      serveOptions
	kubeconfig string
	noSites    bool
	// signingKey is the key serve signs with; "" warns about sites that verify signatures.
	signingKey string
}

func newCheckCmd(g *globals) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that fleetwave can run: Temporal, search attributes, workers, the repo, site branches and sites",
		Long: `check verifies, like flux check, everything a rollout of the fleet needs, and prints one line
per check (✔ or ✗, and what to do):

  - Temporal answers at the address and namespace;
  - fleetwave's search attributes exist in the namespace;
  - workers poll the fleet's task queue ("fleetwave/<fleet>", or --task-queue);
  - the fleet repo can be read, and its plan on the source branch is valid;
  - every site's branch exists;
  - every site's kubeconfig context answers and its Flux Kustomization can be read
    (--kubeconfig, else $KUBECONFIG; --no-sites skips this);
  - the signing key (--signing-key, else $FLEETWAVE_SIGNING_KEY_FILE) can sign, and a warning
    when a site's GitRepository verifies signatures (spec.verify) and no key is given.

It exits 1 when any check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !runCheck(cmd.Context(), g, o) {
				return errSilent
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.serve.repo, "repo", "", "URL of the fleet repo")
	f.StringVar(&o.serve.sourceBranch, "source-branch", "main", "branch holding the plan")
	f.StringVar(&o.serve.fleet, "fleet", "", "fleet name (default: the plan's metadata.name, else the repo name)")
	f.StringVar(&o.serve.taskQueue, "task-queue", "", `task queue of the fleet's workers (default "fleetwave/<fleet>")`)
	f.StringVar(&o.serve.sshKey, "ssh-key", "", "private key file for ssh:// and git@ repo URLs")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig files, separated like PATH (default $KUBECONFIG, else ~/.kube/config)")
	f.BoolVar(&o.noSites, "no-sites", false, "do not check the sites' clusters")
	f.StringVar(&o.signingKey, "signing-key", os.Getenv("FLEETWAVE_SIGNING_KEY_FILE"), "the key serve signs commits with (default $FLEETWAVE_SIGNING_KEY_FILE)")
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

// checker prints one line per check and remembers whether one failed.
type checker struct {
	w      io.Writer
	failed bool
}

func (c *checker) ok(format string, args ...any) { fmt.Fprintf(c.w, "✔ "+format+"\n", args...) }

func (c *checker) warn(format string, args ...any) { fmt.Fprintf(c.w, "! "+format+"\n", args...) }

func (c *checker) fail(format string, args ...any) {
	c.failed = true
	fmt.Fprintf(c.w, "✗ "+format+"\n", args...)
}

// runCheck runs every check it can (a check whose input is missing is skipped) and reports
// whether all passed.
func runCheck(ctx context.Context, g *globals, o checkOptions) bool {
	c := &checker{w: g.stdout}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// The repo first: it names the fleet.
	var plan *rollout.Plan
	fleet := o.serve.fleet
	repo, err := gitops.Open(ctx, o.serve.repo, gitOptions(o.serve)...)
	if err != nil {
		c.fail("repo %s: %v", o.serve.repo, err)
	} else if head, err := repo.Branch(o.serve.sourceBranch); err != nil {
		c.fail("repo %s: branch %s: %v", repo.URL(), o.serve.sourceBranch, err)
	} else if plan, err = fleetOf(repo, o.serve.sourceBranch); err != nil {
		c.fail("plan: %v", err)
	} else {
		fleet = cmp.Or(fleet, cmp.Or(plan.Name, strings.TrimSuffix(path.Base(o.serve.repo), ".git")))
		c.ok("repo %s: %s at %s, plan of fleet %s: %s in %s", repo.URL(), o.serve.sourceBranch, rollout.Short(head),
			fleet, rollout.Count(len(plan.Sites), "site"), rollout.Count(len(plan.Waves), "wave"))
		var missing []string
		for _, s := range plan.Sites {
			if _, err := repo.Branch(plan.SiteBranchFor(s.Name)); err != nil {
				missing = append(missing, plan.SiteBranchFor(s.Name))
			}
		}
		if len(missing) == 0 {
			c.ok("site branches: all %d exist", len(plan.Sites))
		} else {
			c.fail("site branches: %d of %d missing (%s); create each from the source branch: git push origin %s:%s",
				len(missing), len(plan.Sites), strings.Join(missing, ", "), o.serve.sourceBranch, missing[0])
		}
	}

	// Temporal.
	tc, namespace, err := g.temporal.dial(ctx, nil, nil, "")
	if err != nil {
		c.fail("temporal: %v", err)
	} else {
		defer tc.Close()
		opts, _ := g.temporal.options()
		c.ok("temporal: %s answers (namespace %s)", opts.HostPort, namespace)
		fw := workflows.NewClient(tc, o.serve.taskQueue)
		switch missing, err := fw.MissingSearchAttributes(ctx, namespace); {
		case err != nil:
			c.fail("search attributes: %v", err)
		case len(missing) > 0:
			c.fail("search attributes: %s missing in namespace %s; serve registers them when its credentials may, else %s",
				strings.Join(missing, ", "), namespace, workflows.ManualSearchAttributes(namespace))
		default:
			c.ok("search attributes: all %d registered", len(workflows.SearchAttributes))
		}
		if fleet != "" {
			queue := cmp.Or(o.serve.taskQueue, workflows.TaskQueue(fleet))
			switch workers, err := fw.Workers(ctx, fleet); {
			case err != nil:
				c.fail("workers: %v", err)
			case len(workers) == 0:
				c.fail("workers: none polls task queue %s: start fleetwave serve for the fleet (with --task-queue if it uses another)", queue)
			default:
				c.ok("workers: %d poll task queue %s (%s)", len(workers), queue, strings.Join(workers, ", "))
			}
		}
	}

	// The sites.
	if plan != nil && !o.noSites {
		if err := activities.ValidateSites(ctx, strictValidator{deploy.NewKube(o.kubeconfig)}, plan); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				c.fail("%s", line)
			}
		} else {
			c.ok("sites: every context answers and its Kustomization can be read (%s)", rollout.Count(len(plan.Sites), "site"))
			checkSigning(ctx, c, o, plan)
		}
	} else if o.signingKey != "" {
		checkSigning(ctx, c, o, nil)
	}
	return !c.failed
}

// checkSigning checks the signing key, and, with a plan, warns about sites whose sources verify
// commit signatures while no key is given: Flux would refuse every promotion.
func checkSigning(ctx context.Context, c *checker, o checkOptions, plan *rollout.Plan) {
	if o.signingKey != "" {
		s, err := gitops.LoadSigner(o.signingKey)
		if err != nil {
			c.fail("signing: %v", err)
			return
		}
		c.ok("signing: %s signs commits (%s signatures)", o.signingKey, s.Format())
		return
	}
	if plan == nil {
		return
	}
	kube := deploy.NewKube(o.kubeconfig)
	for _, s := range plan.Sites {
		sources, err := kube.Verifying(ctx, s)
		if err != nil || len(sources) == 0 {
			continue
		}
		c.warn("site %s: %s verifies commit signatures (spec.verify), and no signing key is set: Flux will refuse every promotion and revert; give serve --signing-key (docs/adopting.md#signed-commits)", s.Name, strings.Join(sources, ", "))
	}
}
