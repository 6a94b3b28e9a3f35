package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/chatops"
	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/pushevent"
	"github.com/fleetwave/fleetwave/internal/metrics"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// envWebhookSecret holds the push event secret of fleets that name no variable of their own.
const envWebhookSecret = "FLEETWAVE_WEBHOOK_SECRET"

// fleetConfigs are the fleets serve serves: one per --repo, or those of --config.
func (o serveOptions) fleetConfigs() ([]rollout.FleetConfig, string, error) {
	switch {
	case o.config != "" && len(o.repos) > 0:
		return nil, "", usagef("--config and --repo: give the fleets in one place (the config file lists each fleet's repo)")
	case o.config != "":
		data, err := os.ReadFile(o.config)
		if err != nil {
			return nil, "", fmt.Errorf("--config: %w", err)
		}
		cfg, err := rollout.ParseServeConfig(o.config, data)
		if err != nil {
			return nil, "", err
		}
		for _, flag := range []struct{ name, value string }{{"--fleet", o.fleet}, {"--task-queue", o.taskQueue}} {
			if flag.value != "" {
				return nil, "", usagef("%s with --config: set name and taskQueue per fleet in %s", flag.name, o.config)
			}
		}
		for i := range cfg.Fleets {
			f := &cfg.Fleets[i]
			f.SourceBranch = cmp.Or(f.SourceBranch, o.sourceBranch)
			f.Poll = cmp.Or(f.Poll, o.poll)
			f.Kubeconfig = cmp.Or(f.Kubeconfig, o.kubeconfig)
			f.EvidenceBranch = cmp.Or(f.EvidenceBranch, o.evidenceBranch)
			f.SigningKeyFile = cmp.Or(f.SigningKeyFile, o.signingKey)
		}
		return cfg.Fleets, o.config, nil
	case len(o.repos) == 0:
		return nil, "", usagef("--repo or --config: name the fleet repo to serve")
	case len(o.repos) > 1 && (o.fleet != "" || o.taskQueue != ""):
		return nil, "", usagef("--fleet and --task-queue name one fleet: with several --repo, each fleet takes its plan's name and its own queue (or use --config)")
	}
	var out []rollout.FleetConfig
	for _, repo := range o.repos {
		out = append(out, rollout.FleetConfig{Repo: repo, Name: o.fleet, SourceBranch: o.sourceBranch, Poll: o.poll,
			TaskQueue: o.taskQueue, Kubeconfig: o.kubeconfig, EvidenceBranch: o.evidenceBranch, SigningKeyFile: o.signingKey})
	}
	return out, "--repo", nil
}

// where says where a fleet was configured, for errors: the config file's position, or the
// repo URL without its credentials.
func where(source string, f rollout.FleetConfig) string {
	if f.Line > 0 {
		return fmt.Sprintf("%s:%d:%d", source, f.Line, f.Column)
	}
	repo := f.Repo
	if u, err := url.Parse(repo); err == nil && u.User != nil {
		u.User = nil
		repo = u.String()
	}
	return source + " " + repo
}

// openFleet is a fleet whose repo is read and plan known, not yet on Temporal.
type openFleet struct {
	cfg     rollout.FleetConfig
	name    string
	writer  *gitops.Repo
	plan    *rollout.Plan
	metrics *metrics.Set
	secret  []byte
	kube    *deploy.Kube // nil with --driver sim
}

// openFleets reads every fleet's repo and plan and checks what can be checked without
// Temporal: one name per fleet, and (--driver kube) a kubeconfig context for every site.
func openFleets(ctx context.Context, log *slog.Logger, o serveOptions, reg *metrics.Registry) ([]*openFleet, error) {
	configs, source, err := o.fleetConfigs()
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	var out []*openFleet
	for _, c := range configs {
		of := &openFleet{cfg: c}
		// The metrics carry the fleet's name, known once the plan is read; nothing pushes before.
		opts := gitops.ServeHistory(c.SourceBranch, o.siteHistory, o.sourceHistory)
		if c.SigningKeyFile != "" {
			// A key that cannot sign stops serve here, naming the file, not at the first promotion.
			signer, err := gitops.LoadSigner(c.SigningKeyFile)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where(source, c), err)
			}
			opts = append(opts, gitops.WithSigner(signer))
		}
		of.writer, err = gitops.Open(ctx, c.Repo, append(append(gitOptions(o), opts...), gitops.WithLogger(log),
			gitops.WithPushObserver(func(p gitops.PushStat) { of.metrics.ObservePush(p) }))...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where(source, c), err)
		}
		if of.plan, err = fleetOf(of.writer, c.SourceBranch); err != nil {
			return nil, fmt.Errorf("%s: read the plan on %s: %w", where(source, c), c.SourceBranch, err)
		}
		of.name = cmp.Or(c.Name, cmp.Or(of.plan.Name, strings.TrimSuffix(path.Base(c.Repo), ".git")))
		if prev, dup := names[of.name]; dup {
			return nil, fmt.Errorf("%s and %s are both fleet %q: each fleet needs its own name (name in --config, or metadata.name in its plan), "+
				"or one fleet's worker would take the other's tasks", prev, where(source, c), of.name)
		}
		names[of.name] = where(source, c)
		if b := c.EvidenceBranch; b != "" {
			if err := evidenceBranchOK(b, of.plan); err != nil {
				return nil, fmt.Errorf("%s: %w", where(source, c), err)
			}
		}
		if err := of.plan.CheckBranches(c.SourceBranch); err != nil {
			return nil, fmt.Errorf("%s, %s on %s: %w", where(source, c), rollout.PlanFile, c.SourceBranch, err)
		}
		env := cmp.Or(c.WebhookSecretEnv, envWebhookSecret)
		if of.secret = []byte(os.Getenv(env)); len(of.secret) == 0 {
			log.Warn(env+" is not set: every push event of the fleet will be refused", "fleet", of.name)
		}
		if o.driver == "kube" {
			of.kube = deploy.NewKube(c.Kubeconfig)
			of.kube.QPS, of.kube.Burst = float32(o.kubeQPS), o.kubeBurst
			var missing []string
			for _, s := range of.plan.Sites {
				if err := of.kube.Configured(s); err != nil {
					missing = append(missing, err.Error())
				}
			}
			if len(missing) > 0 {
				return nil, fmt.Errorf("fleet %s, %s on %s: the kubeconfig cannot reach every site (--driver kube):\n  %s\n"+
					"give --kubeconfig (or KUBECONFIG, or kubeconfig in --config) with a context for each site, named as its cluster.context (default: the site's name)",
					of.name, rollout.PlanFile, c.SourceBranch, strings.Join(missing, "\n  "))
			}
		}
		of.metrics = metrics.New(reg, of.name)
		out = append(out, of)
	}
	return out, nil
}

// start connects the fleet to Temporal and starts its worker and coordinator. The returned
// function stops what it started.
func (of *openFleet) start(ctx context.Context, g *globals, log *slog.Logger, o serveOptions) (*node, func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	fail := func(err error) (*node, func(), error) {
		stop()
		return nil, nil, fmt.Errorf("fleet %s: %w", of.name, err)
	}
	var driver deploy.Driver = of.kube
	if of.kube == nil {
		follower, err := gitops.Open(ctx, of.cfg.Repo, append(gitOptions(o), gitops.ServeHistory(of.cfg.SourceBranch, o.siteHistory, o.sourceHistory)...)...)
		if err != nil {
			return fail(err)
		}
		// The simulated fleet runs until its own context ends: stop cancels it, then waits.
		simCtx, simCancel := context.WithCancel(ctx)
		simFleet, simDone := startSimFleet(simCtx, follower, of.plan, log)
		stops = append(stops, func() { simCancel(); simDone() })
		driver = simFleet
	}
	tc, namespace, err := g.temporal.dial(ctx, log, of.metrics.Temporal(), "")
	if err != nil {
		return fail(err)
	}
	stops = append(stops, tc.Close)
	n := newNode(log, tc, of.metrics, of.name, of.cfg.TaskQueue, of.cfg.SourceBranch, of.secret)
	n.repoURL = of.writer.URL()
	n.poll = of.cfg.Poll
	n.head = headOf(of.writer, of.cfg.SourceBranch)
	if channel := of.cfg.SlackChannel; channel != "" {
		n.adapt = func(p *rollout.Plan) *rollout.Plan {
			var notify rollout.SlackNotify
			if p.Notify.Slack != nil {
				notify = *p.Notify.Slack
			}
			notify.Channel = cmp.Or(notify.Channel, channel)
			p.Notify.Slack = &notify
			return p
		}
	}
	of.metrics.WatchRollouts(n.fw, of.name)
	if err := n.fw.EnsureSearchAttributes(ctx, namespace); err != nil {
		return fail(err)
	}
	n.publicURL = os.Getenv(envPublicURL)
	if n.reportTTL, err = reportLinkTTL(); err != nil {
		return fail(err)
	}
	n.setupSlack(log, os.Getenv(envTemporalUI), namespace)
	n.keepEvidence(of.writer, of.cfg.EvidenceBranch)
	n.checker = &deploy.Checker{AllowLinkLocal: o.allowLinkLocal}
	w, err := n.startWorker(of.writer, driver, 2*time.Second)
	if err != nil {
		return fail(err)
	}
	stops = append(stops, w.Stop)
	if err := n.fw.EnsureFleet(ctx, n.fleetInput()); err != nil {
		return fail(err)
	}
	return n, stop, nil
}

// fleetServer is the HTTP endpoints of a server of several fleets: it routes push events by
// signature and repository (or by the path /hooks/git/<fleet>), and Slack requests by the
// rollout they name.
type fleetServer struct {
	log      *slog.Logger
	nodes    []*node
	byName   map[string]*node
	unrouted *metrics.Set // push events that reach no fleet
	slack    *chatops.Handler
}

func newFleetServer(log *slog.Logger, nodes []*node, reg *metrics.Registry) *fleetServer {
	s := &fleetServer{log: log, nodes: nodes, byName: map[string]*node{}, unrouted: metrics.New(reg, "-")}
	routes := fleetRollouts{}
	for _, n := range nodes {
		s.byName[n.fleet] = n
		if n.slackHandler != nil {
			routes[n.fleet] = n.slackHandler.Rollouts
		}
	}
	if len(nodes) > 0 && nodes[0].slackHandler != nil {
		// One Slack app: one signing secret, one handler, whose rollouts are every fleet's.
		first := nodes[0].slackHandler
		s.slack = &chatops.Handler{SigningSecret: first.SigningSecret, Rollouts: routes, Groups: first.Groups, Log: first.Log,
			HTTP: first.HTTP, ResponseHosts: first.ResponseHosts, Now: first.Now, Count: first.Count}
	}
	return s
}

func (s *fleetServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/git", s.gitHook)
	mux.HandleFunc("POST /hooks/git/{fleet}", func(w http.ResponseWriter, r *http.Request) {
		n := s.byName[r.PathValue("fleet")]
		if n == nil {
			replyPush(w, s.unrouted, http.StatusNotFound, "unknown_fleet", hookReply{Status: "rejected", Reason: fmt.Sprintf("no fleet %q is served here", r.PathValue("fleet"))})
			return
		}
		n.gitHook(w, r)
	})
	mux.HandleFunc("GET /healthz", s.nodes[0].healthz)
	mux.HandleFunc("GET /reports/{path...}", func(w http.ResponseWriter, r *http.Request) {
		// rollout/<fleet>/<commit>.md: the fleet whose rollout it is serves it.
		parts := strings.SplitN(r.PathValue("path"), "/", 3)
		if len(parts) < 3 || s.byName[parts[1]] == nil {
			http.NotFound(w, r)
			return
		}
		s.byName[parts[1]].reportPage(w, r)
	})
	mux.Handle("GET /metrics", guardMetrics(s.nodes[0].metricsHandler(), os.Getenv(envMetricsToken)))
	if s.slack != nil {
		s.slack.Register(mux)
	}
	return mux
}

// gitHook hands a push event to the fleet whose secret signed it and whose repo it names.
func (s *fleetServer) gitHook(w http.ResponseWriter, r *http.Request) {
	if len(s.nodes) == 1 {
		s.nodes[0].gitHook(w, r)
		return
	}
	body, ok := readHookBody(w, r, s.unrouted)
	if !ok {
		return
	}
	var signedFor []string
	for _, n := range s.nodes {
		ev, err := pushevent.Parse(r.Header, body, n.secret)
		if errors.Is(err, pushevent.ErrSignature) {
			continue
		}
		if err != nil || repoMatches(n.repoURL, ev.Repository) {
			r.Body = io.NopCloser(bytes.NewReader(body))
			n.gitHook(w, r)
			return
		}
		signedFor = append(signedFor, n.fleet)
	}
	if len(signedFor) == 0 {
		s.log.Warn("push event refused: no fleet's secret verifies its signature", "remote", r.RemoteAddr)
		replyPush(w, s.unrouted, http.StatusUnauthorized, "unauthorized", hookReply{Status: "rejected", Reason: "invalid signature"})
		return
	}
	replyPush(w, s.unrouted, http.StatusAccepted, "unknown_repository", hookReply{Status: "ignored",
		Reason: fmt.Sprintf("the repository of this push event is not the repo of fleet %s: it starts nothing here; send it to /hooks/git/<fleet>", strings.Join(signedFor, ", "))})
}

// repoMatches reports whether a push event's repository (a full name like "acme/fleet", or a
// URL) is the repo at repoURL.
func repoMatches(repoURL, repository string) bool {
	norm := func(s string) string {
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			s = u.Path
		} else if _, p, ok := strings.Cut(s, ":"); ok && strings.Contains(s, "@") {
			s = p // git@host:acme/fleet.git
		}
		return strings.Trim(strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git"), "/")
	}
	repo, name := norm(repoURL), norm(repository)
	return name != "" && (repo == name || strings.HasSuffix(repo, "/"+name))
}

// fleetRollouts routes Slack's requests to the rollouts of the fleet they name: a rollout ID
// names its fleet, "<fleet>/<commit>" too, and a bare commit is looked for in every fleet.
type fleetRollouts map[string]chatops.Rollouts

func (f fleetRollouts) names() string {
	var out []string
	for name := range f {
		out = append(out, name)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// route returns the fleet's rollouts for ref, and ref as that fleet takes it.
func (f fleetRollouts) route(ctx context.Context, ref string) (chatops.Rollouts, string, error) {
	if len(f) == 1 {
		for _, r := range f {
			return r, ref, nil
		}
	}
	fleet, rest, hasFleet := strings.Cut(strings.TrimPrefix(ref, "rollout/"), "/")
	if hasFleet {
		r, ok := f[fleet]
		if !ok {
			return nil, "", fmt.Errorf("fleet %s is not served here (this fleetwave serves %s): ask the fleetwave that serves it", fleet, f.names())
		}
		if strings.HasPrefix(ref, "rollout/") {
			return r, ref, nil
		}
		return r, rest, nil
	}
	// A bare commit: the one fleet that has a rollout of it.
	var found []string
	var route chatops.Rollouts
	for name, r := range f {
		if _, err := r.Status(ctx, ref); err == nil {
			found, route = append(found, name), r
		}
	}
	switch len(found) {
	case 1:
		return route, ref, nil
	case 0:
		return nil, "", fmt.Errorf("no rollout of %s in fleets %s: give the rollout ID (rollout/<fleet>/<commit>)", ref, f.names())
	}
	slices.Sort(found)
	return nil, "", fmt.Errorf("%s names rollouts of fleets %s: give <fleet>/%s", ref, strings.Join(found, ", "), ref)
}

func (f fleetRollouts) Status(ctx context.Context, ref string) (rollout.Status, error) {
	r, ref, err := f.route(ctx, ref)
	if err != nil {
		return rollout.Status{}, err
	}
	return r.Status(ctx, ref)
}

func (f fleetRollouts) Do(ctx context.Context, a chatops.Action) (string, error) {
	r, ref, err := f.route(ctx, a.Rollout)
	if err != nil {
		return "", err
	}
	a.Rollout = ref
	return r.Do(ctx, a)
}

func (f fleetRollouts) Active(ctx context.Context) ([]chatops.Active, error) {
	var out []chatops.Active
	for _, r := range f {
		list, err := r.Active(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	slices.SortFunc(out, func(a, b chatops.Active) int { return strings.Compare(a.Rollout, b.Rollout) })
	return out, nil
}

// healthz answers 200 while Temporal answers.
func (n *node) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if _, err := n.tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		http.Error(w, "temporal unreachable", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// serveFleets runs the fleets of o until ctx ends.
func serveFleets(ctx context.Context, g *globals, log *slog.Logger, o serveOptions) error {
	reg := metrics.NewRegistry()
	fleets, err := openFleets(ctx, log, o, reg)
	if err != nil {
		return err
	}
	if o.driver == "sim" {
		// The site branches are real, the sites are not: say so where nobody can miss it,
		// whatever the log level.
		fmt.Fprintln(g.stderr, "fleetwave serve: "+deploy.SimulatedNote+". Every rollout's status says so; use --driver kube for real sites")
	}
	var nodes []*node
	for _, of := range fleets {
		n, stop, err := of.start(ctx, g, log, o)
		if err != nil {
			return err
		}
		defer stop()
		nodes = append(nodes, n)
	}
	url, done, err := serveHTTP(ctx, log, o.http, newFleetServer(log, nodes, reg).handler())
	if err != nil {
		return err
	}
	for _, of := range fleets {
		log.Info("serving", "http", url, "fleet", of.name, "repo", of.writer.URL(), "taskQueue", cmp.Or(of.cfg.TaskQueue, workflows.TaskQueue(of.name)))
	}
	<-ctx.Done()
	<-done
	return nil
}

// evidenceBranchOK refuses an evidence branch that is not a branch name, or that a rollout
// reads: the source branch (each evidence commit would start a rollout) or a site branch
// (Flux would apply the reports).
func evidenceBranchOK(b string, plan *rollout.Plan) error {
	if !rollout.ValidBranch(b) {
		return usagef("--evidence-branch %q is not a branch name", b)
	}
	if b == plan.SourceBranch {
		return usagef("--evidence-branch %s is the fleet's source branch: each report would start a rollout; name a branch of its own, such as evidence", b)
	}
	for _, s := range plan.Sites {
		if b == plan.SiteBranchFor(s.Name) {
			return usagef("--evidence-branch %s is the branch of site %s, which Flux applies; name a branch of its own, such as evidence", b, s.Name)
		}
	}
	return nil
}
