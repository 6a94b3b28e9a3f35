package main

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/chatops"
	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/deploy/sim"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/pushevent"
	"github.com/fleetwave/fleetwave/internal/metrics"
	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// maxHookBody bounds a push event body.
const maxHookBody = 5 << 20

func newLogger(g *globals) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usagef("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "", "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, usagef("--log-format %q: use text or json", g.logFormat)
}

// node is one fleetwave server: the Temporal worker that runs rollouts of one fleet, and the
// HTTP endpoints that start them.
type node struct {
	log   *slog.Logger
	tc    client.Client
	fw    *workflows.Client
	fleet string
	// repoURL is the fleet repo's URL (credentials removed), to route push events by repository.
	repoURL string
	// taskQueue is the queue the worker polls and the fleet's workflows start on.
	taskQueue    string
	sourceBranch string
	// poll is how often the fleet workflow reads the source branch itself; 0 relies on push events.
	poll    time.Duration
	secret  []byte
	metrics *metrics.Set
	// slack posts rollout threads; slackHandler serves the Slack endpoints (setupSlack).
	slack        *activities.Slack
	slackHandler *chatops.Handler
	// activityContext is the worker's BackgroundActivityContext (a rehearsal's time scale, for
	// policies); nil means the SDK's default.
	activityContext context.Context
	// adapt changes every plan the worker loads (a rehearsal's scale); nil leaves them.
	adapt func(*rollout.Plan) *rollout.Plan
	// voteKey proves to the rollouts that a vote came through a verified Slack request
	// (workflows.VoteKey); nil refuses every Slack vote.
	voteKey []byte
	// head reads the source branch's head from the git server, so that a push event for a
	// commit that is no longer the head (late, redelivered or replayed) starts nothing; nil
	// skips the check.
	head func(ctx context.Context) (string, error)
	// namespace is the Temporal namespace of the fleet's workflows.
	namespace string
	// publicURL is where people reach this server (FLEETWAVE_PUBLIC_URL), for report links;
	// reportKey signs them (report.LinkKey: nil, no links and no report pages) and reportTTL
	// is how long one lasts (FLEETWAVE_REPORT_LINK_TTL); reportLinks are the reports' own links.
	publicURL   string
	reportKey   []byte
	reportTTL   time.Duration
	reportLinks report.Links
	// evidence writes each ended rollout's report to the evidence branch (keepEvidence); nil
	// keeps none.
	evidence *activities.Evidence
	// checker measures the plans' health checks (nil: deploy.Checker's safe defaults).
	checker *deploy.Checker
}

// keepEvidence makes the worker commit each ended rollout's report to branch of repo ("" keeps
// none). The reports name the namespace and carry the links setupSlack set, as the report
// pages do.
func (n *node) keepEvidence(repo *gitops.Repo, branch string) {
	if branch == "" {
		return
	}
	n.evidence = &activities.Evidence{Repo: repo, Branch: branch,
		Report: func(ctx context.Context, id, runID string, final rollout.Status) (report.Report, error) {
			return n.fw.ReportOf(ctx, n.namespace, id, runID, final, n.reportLinks)
		}}
}

// headOf reads branch's head from repo, fetching first.
func headOf(repo *gitops.Repo, branch string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		if err := repo.Refresh(ctx); err != nil {
			return "", err
		}
		return repo.Branch(branch)
	}
}

// newNode is the server of fleet; its worker polls taskQueue, "" for the fleet's own queue
// (workflows.TaskQueue). m are its metrics, the set whose Temporal handler tc was dialled with
// (nil: a set of its own, without the workflows' metrics).
func newNode(log *slog.Logger, tc client.Client, m *metrics.Set, fleet, taskQueue, sourceBranch string, secret []byte) *node {
	taskQueue = cmp.Or(taskQueue, workflows.TaskQueue(fleet))
	if m == nil {
		m = metrics.New(nil, fleet)
	}
	return &node{log: log, tc: tc, fw: workflows.NewClient(tc, taskQueue), fleet: fleet, taskQueue: taskQueue, sourceBranch: sourceBranch,
		secret: secret, metrics: m}
}

// reserved are the branches of the fleet repo that no site's branch may be: the source branch
// and the evidence branch.
func (n *node) reserved() []string {
	out := []string{n.sourceBranch}
	if n.evidence != nil && n.evidence.Branch != "" {
		out = append(out, n.evidence.Branch)
	}
	return out
}

// startWorker registers the workflows and activities and starts polling.
func (n *node) startWorker(repo activities.Repo, driver deploy.Driver, poll time.Duration) (worker.Worker, error) {
	w := worker.New(n.tc, n.taskQueue, worker.Options{
		Interceptors:              []interceptor.WorkerInterceptor{workflows.VoteOrigins(n.voteKey)},
		BackgroundActivityContext: n.activityContext,
	})
	if err := workflows.Register(w, workflows.Activities{
		Git:        &activities.Git{Repo: repo, Sites: driver, Adapt: n.adapt, SourceBranch: n.sourceBranch, Reserved: n.reserved()},
		Sites:      &activities.Sites{Driver: driver, Poll: poll, Ancestry: repo, Checker: n.checker},
		Executions: &activities.Executions{Client: n.tc},
		Slack:      n.slack,
		Evidence:   n.evidence,
	}); err != nil {
		return nil, err
	}
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("start temporal worker: %w", err)
	}
	return w, nil
}

// handler is the HTTP endpoints of a server of this one fleet.
func (n *node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/git", n.gitHook)
	mux.HandleFunc("GET /healthz", n.healthz)
	mux.HandleFunc("GET /reports/{path...}", n.reportPage)
	mux.Handle("GET /metrics", n.metricsHandler())
	if n.slackHandler != nil {
		n.slackHandler.Register(mux)
	}
	return mux
}

// envMetricsToken, when set, is the bearer token GET /metrics asks for: its gauges name the
// fleet's rollouts and sites, and each scrape asks Temporal questions.
const envMetricsToken = "FLEETWAVE_METRICS_TOKEN"

// guardMetrics makes h answer only requests that carry token as a bearer token ("" lets every
// request through). A request without it gets 401, and the comparison takes the same time
// whatever it is given.
func guardMetrics(h http.Handler, token string) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleetwave metrics"`)
			http.Error(w, "unauthorized: GET /metrics needs Authorization: Bearer <"+envMetricsToken+">", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (n *node) metricsHandler() http.Handler {
	return promhttp.HandlerFor(n.metrics.Registry, promhttp.HandlerOpts{})
}

type hookReply struct {
	Status  string `json:"status"`
	Rollout string `json:"rollout,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

func (n *node) reply(w http.ResponseWriter, code int, result string, r hookReply) {
	replyPush(w, n.metrics, code, result, r)
}

// replyPush answers a push event and counts it by result in m.
func replyPush(w http.ResponseWriter, m *metrics.Set, code int, result string, r hookReply) {
	m.PushEvents.WithLabelValues(result).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(r)
}

// readHookBody reads a push event's body, at most maxHookBody bytes; when it cannot, it
// answers the request (counted in m) and returns false.
func readHookBody(w http.ResponseWriter, r *http.Request, m *metrics.Set) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		replyPush(w, m, http.StatusRequestEntityTooLarge, "too_large", hookReply{Status: "rejected", Reason: "body over 5 MiB"})
		return nil, false
	case err != nil:
		replyPush(w, m, http.StatusBadRequest, "bad_request", hookReply{Status: "rejected", Reason: "cannot read body"})
		return nil, false
	}
	return body, true
}

// gitHook takes a push event from GitHub, GitLab, Gitea, Forgejo or the generic format and
// starts a rollout for pushes to the source branch. Everything that is not an authenticated
// push to that branch starts nothing.
func (n *node) gitHook(w http.ResponseWriter, r *http.Request) {
	body, ok := readHookBody(w, r, n.metrics)
	if !ok {
		return
	}
	ev, err := pushevent.Parse(r.Header, body, n.secret)
	switch {
	case errors.Is(err, pushevent.ErrSignature):
		n.log.Warn("push event refused", "error", err, "remote", r.RemoteAddr)
		// The reason stays in the log: telling an unauthenticated caller why (no secret
		// configured, which header is wrong) only helps an attacker.
		n.reply(w, http.StatusUnauthorized, "unauthorized", hookReply{Status: "rejected", Reason: "invalid signature"})
		return
	case errors.Is(err, pushevent.ErrNotPush):
		n.reply(w, http.StatusAccepted, "ignored", hookReply{Status: "ignored", Reason: err.Error()})
		return
	case err != nil:
		n.reply(w, http.StatusBadRequest, "bad_request", hookReply{Status: "rejected", Reason: err.Error()})
		return
	}
	switch {
	case ev.Branch() != n.sourceBranch:
		n.reply(w, http.StatusAccepted, "ignored", hookReply{Status: "ignored",
			Reason: fmt.Sprintf("push to %s: rollouts start from pushes to refs/heads/%s", ev.Ref, n.sourceBranch)})
		return
	case ev.Deleted():
		n.reply(w, http.StatusAccepted, "ignored", hookReply{Status: "ignored", Reason: "branch deleted"})
		return
	}
	if n.head != nil {
		head, err := n.head(r.Context())
		switch {
		case err != nil:
			// Cannot tell: the fleet still refuses a commit older than one it has.
			n.log.Warn("cannot read the source branch's head to check a push event", "error", err)
		case head != ev.After:
			n.log.Info("push event for a commit that is not the head: ignored", "revision", ev.After, "head", head)
			n.reply(w, http.StatusAccepted, "ignored", hookReply{Status: "ignored",
				Reason: fmt.Sprintf("%s is not the head of %s (%s): a late, redelivered or replayed push event starts nothing", rollout.Short(ev.After), n.sourceBranch, rollout.Short(head))})
			return
		}
	}
	id, err := n.fw.Submit(r.Context(), n.fleetInput(), ev.After, rollout.Trigger{Via: rollout.TriggerPush,
		Host: ev.Host, Delivery: ev.Delivery, Repository: ev.Repository, Pusher: ev.Pusher})
	if err != nil {
		n.log.Error("cannot submit the commit", "revision", ev.After, "error", err)
		n.reply(w, http.StatusServiceUnavailable, "error", hookReply{Status: "error", Reason: "cannot start the rollout; see the server log"})
		return
	}
	n.log.Info("commit submitted", "rollout", id, "revision", ev.After)
	n.reply(w, http.StatusAccepted, "accepted", hookReply{Status: "accepted", Rollout: id})
}

// fleetInput configures the fleet's coordinator workflow.
func (n *node) fleetInput() workflows.FleetInput {
	return workflows.FleetInput{Fleet: n.fleet, SourceBranch: n.sourceBranch, Poll: n.poll}
}

// httpLimits bound what one client may hold of the HTTP endpoints: one that sends its headers
// or body slowly, or keeps an idle connection, is cut off (a variable for tests).
var httpLimits = struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
}{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 2 * time.Minute, MaxHeaderBytes: 64 << 10}

// serveHTTP listens on addr (loopback unless the user says otherwise) and serves h until ctx
// ends. It returns the base URL once listening.
func serveHTTP(ctx context.Context, log *slog.Logger, addr string, h http.Handler) (string, <-chan struct{}, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: httpLimits.ReadHeader, ReadTimeout: httpLimits.Read,
		WriteTimeout: httpLimits.Write, IdleTimeout: httpLimits.Idle, MaxHeaderBytes: httpLimits.MaxHeaderBytes}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return "http://" + ln.Addr().String(), done, nil
}

// fleetOf reads the plan at the head of the source branch for the fleet name and sites.
func fleetOf(repo *gitops.Repo, sourceBranch string) (*rollout.Plan, error) {
	head, err := repo.Branch(sourceBranch)
	if err != nil {
		return nil, err
	}
	return activities.ReadPlan(repo, head, rollout.PlanFile+"@"+rollout.Short(head))
}

// notifyPush posts a signed generic push event for branch at sha to a /hooks/git endpoint.
func notifyPush(ctx context.Context, url, repo, branch, sha string, secret []byte) error {
	body, err := json.Marshal(pushevent.Event{Repository: repo, Ref: "refs/heads/" + branch, After: sha})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(pushevent.SignatureHeader, pushevent.Sign(body, secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("notify %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("notify %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// startSimFleet runs a simulated fleet of the plan's sites until ctx ends; the returned
// function waits for it to stop.
func startSimFleet(ctx context.Context, src sim.Source, plan *rollout.Plan, log *slog.Logger, opts ...sim.Option) (*sim.Fleet, func()) {
	f := sim.New(src, plan.SiteBranch, append([]sim.Option{sim.WithLogger(log)}, opts...)...)
	for _, s := range plan.Sites {
		f.Track(s.Name)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	return f, func() { <-done }
}

// reportPage serves GET /reports/<rollout ID>.md (or .html, .json) ?exp=<unix>&sig=<signature>:
// the rollout's report, to whoever has the signed link its Slack thread's last message gives,
// until the link expires. Without a valid signature for that rollout and expiry, or after it,
// the page does not exist: 404, as for a rollout of another fleet.
func (n *node) reportPage(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	ext := path.Ext(p)
	id := strings.TrimSuffix(p, ext)
	format := map[string]string{".md": "md", ".html": "html", ".json": "json"}[ext]
	q := r.URL.Query()
	if format == "" || !strings.HasPrefix(id, "rollout/"+n.fleet+"/") || !report.LinkValid(n.reportKey, id, q.Get("exp"), q.Get("sig"), time.Now()) {
		http.NotFound(w, r)
		return
	}
	rep, err := n.fw.Report(r.Context(), n.namespace, id, n.reportLinks)
	if err != nil {
		n.log.Warn("cannot make the report of a rollout", "rollout", id, "error", err)
		http.Error(w, "cannot make the report of "+id+" now; see the server log", http.StatusBadGateway)
		return
	}
	data, err := renderReport(rep, format)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", map[string]string{"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8", "json": "application/json"}[format])
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	h.Set("Cache-Control", "private, no-store")
	_, _ = w.Write(data)
}
