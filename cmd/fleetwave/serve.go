package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/internal/metrics"
	"github.com/fleetwave/fleetwave/rollout"
)

type serveOptions struct {
	repo         string
	fleet        string
	sourceBranch string
	http         string
	driver       string
	kubeconfig   string
	sshKey       string
	poll         time.Duration
	taskQueue    string
}

func newServeCmd(g *globals) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the fleetwave worker and HTTP endpoints for one fleet repo",
		Long: `serve runs the Temporal worker that executes rollouts of one fleet repo, and the HTTP
endpoints: POST /hooks/git (signed push events start rollouts), GET /healthz, GET /metrics.
The worker polls the fleet's own task queue ("fleetwave/<fleet>", or --task-queue): run as
many serve processes of one fleet as you like (they share the work, and one that dies leaves
its tasks to the others), and fleets side by side in one namespace.

Git credentials: FLEETWAVE_GIT_TOKEN, or FLEETWAVE_GIT_USERNAME and FLEETWAVE_GIT_PASSWORD,
or --ssh-key. Sites (--driver kube, the default): one kubeconfig context per site, named in
the plan (cluster.context, default the site name); fleetwave reads each site's Flux
Kustomization and asks it to reconcile after a push (deploy/install/site/site-rbac.yaml has the
RBAC it needs). --driver sim observes a simulated fleet instead, for trials: the site branches
are written for real, the health gates check nothing real, and every rollout's status says so.
The push event secret: FLEETWAVE_WEBHOOK_SECRET (without it every push event
is refused).

Slack (docs/slack.md): FLEETWAVE_SLACK_TOKEN (the bot token: rollout threads, user groups),
FLEETWAVE_SLACK_SIGNING_SECRET (POST /slack/commands and /slack/interactions; without it
they refuse every request), FLEETWAVE_SLACK_API_URL (another Slack-compatible API),
FLEETWAVE_TEMPORAL_UI_URL (links from Slack to the rollout in the Temporal UI).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runServe(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.repo, "repo", "", "URL of the fleet repo (https://, ssh://, git@host:path, file://)")
	f.StringVar(&o.fleet, "fleet", "", "fleet name used in rollout IDs (default: the plan's metadata.name, else the repo name)")
	f.StringVar(&o.sourceBranch, "source-branch", "main", "branch whose pushes start rollouts")
	f.StringVar(&o.http, "http", "127.0.0.1:8080", "address of the HTTP endpoints")
	f.StringVar(&o.driver, "driver", "kube", "how sites are observed: kube (each site's Flux through its Kubernetes API server) or sim (a simulated fleet following the site branches, for trials: its health gates check nothing real)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig files for --driver kube, separated like PATH (default $KUBECONFIG, else ~/.kube/config)")
	f.StringVar(&o.sshKey, "ssh-key", "", "private key file for ssh:// and git@ repo URLs")
	f.DurationVar(&o.poll, "poll", 0, "also read the source branch this often and roll out new heads (for repos without push events), e.g. 30s")
	f.StringVar(&o.taskQueue, "task-queue", "", `Temporal task queue of this fleet's workflows and activities (default "fleetwave/<fleet>"); every worker of one fleet must poll the same queue, and no other fleet's`)
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

func gitOptions(o serveOptions) []gitops.Option {
	var opts []gitops.Option
	switch {
	case os.Getenv("FLEETWAVE_GIT_TOKEN") != "":
		opts = append(opts, gitops.WithToken(os.Getenv("FLEETWAVE_GIT_TOKEN")))
	case os.Getenv("FLEETWAVE_GIT_USERNAME") != "":
		opts = append(opts, gitops.WithBasicAuth(os.Getenv("FLEETWAVE_GIT_USERNAME"), os.Getenv("FLEETWAVE_GIT_PASSWORD")))
	case o.sshKey != "":
		opts = append(opts, gitops.WithSSHKey("git", o.sshKey, os.Getenv("FLEETWAVE_SSH_PASSPHRASE")))
	}
	return opts
}

func runServe(ctx context.Context, g *globals, o serveOptions) error {
	log, err := newLogger(g)
	if err != nil {
		return err
	}
	if o.driver != "sim" && o.driver != "kube" {
		return fmt.Errorf("--driver %q: use kube or sim", o.driver)
	}
	secret := []byte(os.Getenv("FLEETWAVE_WEBHOOK_SECRET"))
	if len(secret) == 0 {
		log.Warn("FLEETWAVE_WEBHOOK_SECRET is not set: every push event will be refused")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The metrics carry the fleet's name, known once the plan is read; nothing pushes before.
	var m *metrics.Set
	writer, err := gitops.Open(ctx, o.repo, append(gitOptions(o), gitops.WithLogger(log),
		gitops.WithPushObserver(func(p gitops.PushStat) { m.ObservePush(p) }))...)
	if err != nil {
		return err
	}
	plan, err := fleetOf(writer, o.sourceBranch)
	if err != nil {
		return fmt.Errorf("read the plan on %s: %w", o.sourceBranch, err)
	}
	fleetName := cmp.Or(o.fleet, cmp.Or(plan.Name, strings.TrimSuffix(path.Base(o.repo), ".git")))
	m = metrics.New(fleetName)

	var driver deploy.Driver
	if o.driver == "kube" {
		kube := deploy.NewKube(o.kubeconfig)
		var missing []string
		for _, s := range plan.Sites {
			if err := kube.Configured(s); err != nil {
				missing = append(missing, err.Error())
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s on %s: the kubeconfig cannot reach every site (--driver kube):\n  %s\n"+
				"give --kubeconfig (or KUBECONFIG) with a context for each site, named as its cluster.context (default: the site's name)",
				rollout.PlanFile, o.sourceBranch, strings.Join(missing, "\n  "))
		}
		driver = kube
	} else {
		// The site branches are real, the sites are not: say so where nobody can miss it,
		// whatever the log level.
		fmt.Fprintln(g.stderr, "fleetwave serve: "+deploy.SimulatedNote+". Every rollout's status says so; use --driver kube for real sites")
		follower, err := gitops.Open(ctx, o.repo, gitOptions(o)...)
		if err != nil {
			return err
		}
		simFleet, simDone := startSimFleet(ctx, follower, plan, log)
		defer simDone()
		driver = simFleet
	}
	defer cancel()

	tc, namespace, err := g.temporal.dial(ctx, log, m.Temporal(), "")
	if err != nil {
		return err
	}
	defer tc.Close()
	n := newNode(log, tc, m, fleetName, o.taskQueue, o.sourceBranch, secret)
	m.WatchRollouts(n.fw, fleetName)
	if err := n.fw.EnsureSearchAttributes(ctx, namespace); err != nil {
		return err
	}
	n.poll = o.poll
	n.head = headOf(writer, o.sourceBranch)
	n.setupSlack(log, os.Getenv(envTemporalUI), namespace)
	w, err := n.startWorker(writer, driver, 2*time.Second)
	if err != nil {
		return err
	}
	defer w.Stop()
	if err := n.fw.EnsureFleet(ctx, n.fleetInput()); err != nil {
		return err
	}
	url, done, err := serveHTTP(ctx, log, o.http, n.handler())
	if err != nil {
		return err
	}
	log.Info("serving", "http", url, "fleet", fleetName, "repo", writer.URL())
	<-ctx.Done()
	<-done
	return nil
}
