package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
)

type serveOptions struct {
	// repo is the one repo of commands that read one fleet (sites, check, start); serve's
	// fleets are repos or config.
	repo         string
	repos        []string
	config       string
	fleet        string
	sourceBranch string
	http         string
	driver       string
	kubeconfig   string
	kubeQPS      float64
	kubeBurst    int
	sshKey       string
	poll         time.Duration
	taskQueue    string
	// evidenceBranch is where each ended rollout's report is committed ("": nowhere).
	evidenceBranch string
	// signingKey signs every commit fleetwave writes ("": unsigned).
	signingKey string
	// allowLinkLocal lets health checks reach link-local and cloud metadata addresses.
	allowLinkLocal bool
	// siteHistory and sourceHistory bound the commits the worker keeps in memory of each site
	// branch and of the source branch (0: gitops.ServeSiteHistory, ServeSourceHistory).
	siteHistory, sourceHistory int
}

func newServeCmd(g *globals) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the fleetwave workers and HTTP endpoints for fleet repos",
		Long: `serve runs the Temporal worker that executes rollouts of a fleet repo, and the HTTP
endpoints: POST /hooks/git (signed push events start rollouts), GET /healthz, GET /metrics.
--repo repeated, or --config, serves several fleets, each with its own worker, behind one
HTTP server and one Slack app (docs/install.md).
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
is refused). FLEETWAVE_METRICS_TOKEN, when set, is the bearer token GET /metrics asks for.

Slack (docs/slack.md): FLEETWAVE_SLACK_TOKEN (the bot token: rollout threads, user groups),
FLEETWAVE_SLACK_SIGNING_SECRET (POST /slack/commands and /slack/interactions; without it
they refuse every request), FLEETWAVE_SLACK_API_URL (another Slack-compatible API),
FLEETWAVE_TEMPORAL_UI_URL (links from Slack to the rollout in the Temporal UI).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runServe(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.repos, "repo", nil, "URL of a fleet repo (https://, ssh://, git@host:path, file://); repeat it to serve several fleets")
	f.StringVar(&o.config, "config", "", "a ServeConfig file listing the fleets to serve, each with its repo, name, secrets, poll interval, Slack channel, task queue and kubeconfig (docs/install.md#several-fleets-in-one-server)")
	f.StringVar(&o.fleet, "fleet", "", "fleet name used in rollout IDs (default: the plan's metadata.name, else the repo name)")
	f.StringVar(&o.sourceBranch, "source-branch", "main", "branch whose pushes start rollouts")
	f.StringVar(&o.http, "http", "127.0.0.1:8080", "address of the HTTP endpoints")
	f.StringVar(&o.driver, "driver", "kube", "how sites are observed: kube (each site's Flux through its Kubernetes API server) or sim (a simulated fleet following the site branches, for trials: its health gates check nothing real)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig files for --driver kube, separated like PATH (default $KUBECONFIG, else ~/.kube/config)")
	f.Float64Var(&o.kubeQPS, "kube-qps", deploy.DefaultQPS, "requests per second to each site's API server (--driver kube; client-go's token bucket, docs/sites.md)")
	f.IntVar(&o.kubeBurst, "kube-burst", deploy.DefaultBurst, "requests at once above --kube-qps to each site's API server (--driver kube)")
	f.StringVar(&o.sshKey, "ssh-key", "", "private key file for ssh:// and git@ repo URLs")
	f.DurationVar(&o.poll, "poll", 0, "also read the source branch this often and roll out new heads (for repos without push events), e.g. 30s")
	f.StringVar(&o.signingKey, "signing-key", os.Getenv("FLEETWAVE_SIGNING_KEY_FILE"), "sign every promotion, revert and evidence commit with this key: an OpenSSH private key (git's SSH signatures) or an armored OpenPGP private key, without a passphrase (default $FLEETWAVE_SIGNING_KEY_FILE; docs/adopting.md#signed-commits)")
	f.StringVar(&o.evidenceBranch, "evidence-branch", "", "commit each ended rollout's report (Markdown and JSON) to this branch of the fleet repo, as evidence/<fleet>/<date>-<short sha>.md (docs/report.md)")
	f.BoolVar(&o.allowLinkLocal, "allow-link-local-checks", false, "let the plans' health checks reach link-local addresses (169.254.0.0/16, fe80::/10) and fd00:ec2::254, where clouds serve instance metadata and credentials; off, such a check is Unknown (docs/operating.md#what-a-plan-can-reach)")
	f.IntVar(&o.siteHistory, "site-history", gitops.ServeSiteHistory, "commits kept in memory of each branch's history, from its head; older ones are shed, so that months of rollouts take no more memory than the first (docs/operating.md#memory)")
	f.IntVar(&o.sourceHistory, "source-history", gitops.ServeSourceHistory, "commits kept of the source branch's history: a commit further behind its head cannot be rolled out (docs/operating.md#memory)")
	f.StringVar(&o.taskQueue, "task-queue", "", `Temporal task queue of this fleet's workflows and activities (default "fleetwave/<fleet>"); every worker of one fleet must poll the same queue, and no other fleet's`)
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
		return usagef("--driver %q: use kube or sim", o.driver)
	}
	if !(o.kubeQPS > 0) || o.kubeBurst < 1 {
		return usagef("--kube-qps %g, --kube-burst %d: a site's API server must be allowed at least some requests", o.kubeQPS, o.kubeBurst)
	}
	if o.siteHistory < 1 || o.sourceHistory < 1 {
		return usagef("--site-history %d, --source-history %d: each keeps at least 1 commit", o.siteHistory, o.sourceHistory)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return serveFleets(ctx, g, log, o)
}
