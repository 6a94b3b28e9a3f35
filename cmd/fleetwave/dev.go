package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gitserver"
	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/internal/metrics"
	"github.com/fleetwave/fleetwave/workflows"
)

// sample is the fleet repo `fleetwave dev` serves on its first start.
//
//go:embed all:sample
var sample embed.FS

// sampleRepo is the name of the sample repository on the dev git server.
const sampleRepo = "fleet"

type devOptions struct {
	data         string
	http         string
	temporalPort int
	uiPort       int
	gitPort      int
	temporalBin  string
	noSample     bool
	// evidenceBranch is where each ended rollout's report goes in the sample repo.
	evidenceBranch string
}

func newDevCmd(g *globals) *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything on this machine: Temporal with its UI, a git server with a sample fleet, simulated sites",
		Long: `dev starts a Temporal dev server with its web UI, a git server on 127.0.0.1 serving a sample
fleet repo, a simulated fleet whose sites follow their site branches like Flux would, the
fleetwave worker and its HTTP endpoints. A push to the sample repo's main branch starts a
rollout. Ctrl-C stops everything; with --data the state survives a restart and running
rollouts resume.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runDev(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", "", "keep state (Temporal database, git repositories) in this directory; default: a temporary directory removed on exit")
	f.StringVar(&o.http, "http", "127.0.0.1:8080", "address of the HTTP endpoints (/hooks/git, /healthz, /metrics)")
	f.IntVar(&o.temporalPort, "temporal-port", 7233, "Temporal frontend port (0 picks a free port)")
	f.IntVar(&o.uiPort, "ui-port", 8233, "Temporal web UI port (0 picks a free port)")
	f.IntVar(&o.gitPort, "git-port", 8081, "git server port (0 picks a free port)")
	f.StringVar(&o.temporalBin, "temporal", "", "the Temporal CLI binary (default: $FLEETWAVE_TEMPORAL, .tools/bin/temporal, or temporal on PATH)")
	f.StringVar(&o.evidenceBranch, "evidence-branch", "evidence", `commit each ended rollout's report to this branch of the sample repo ("" for none)`)
	f.BoolVar(&o.noSample, "no-sample-rollout", false, "do not start a rollout of the sample repo's head on start")
	return cmd
}

func runDev(ctx context.Context, g *globals, o devOptions) (err error) {
	log, err := newLogger(g)
	if err != nil {
		return err
	}
	data := o.data
	if data == "" {
		if data, err = os.MkdirTemp("", "fleetwave-dev-"); err != nil {
			return err
		}
		defer os.RemoveAll(data)
	}
	if data, err = filepath.Abs(data); err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Temporal first: it is the slowest to start.
	ts, err := devtemporal.Start(ctx, devtemporal.Options{
		Binary: o.temporalBin, Port: o.temporalPort, UIPort: o.uiPort,
		DBFile: filepath.Join(data, "temporal.db"), SearchAttributes: workflows.SearchAttributes,
	})
	if err != nil {
		return err
	}
	defer ts.Stop()

	// The git server, seeded with the sample fleet on first start. Its push hook tells the
	// HTTP endpoint about new heads of the source branch, like a git host's webhook would.
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	var hook pushNotifier
	gs, err := gitserver.New(filepath.Join(data, "git"), gitserver.WithPushHook(hook.pushed), gitserver.WithLogger(log))
	if err != nil {
		return err
	}
	if err := seedSample(gs); err != nil {
		return err
	}
	gitURL, stopGit, err := gitserver.Listen("127.0.0.1:"+strconv.Itoa(o.gitPort), gs)
	if err != nil {
		return err
	}
	defer stopGit()
	repoURL := gitURL + "/" + sampleRepo + ".git"

	var m *metrics.Set // once the fleet's name is known; nothing pushes before
	writer, err := gitops.Open(ctx, repoURL, append(gitops.ServeHistory("main", 0, 0), gitops.WithLogger(log), gitops.WithPushObserver(func(p gitops.PushStat) { m.ObservePush(p) }))...)
	if err != nil {
		return err
	}
	plan, err := fleetOf(writer, "main")
	if err != nil {
		return fmt.Errorf("sample fleet: %w", err)
	}
	if o.evidenceBranch != "" {
		if err := evidenceBranchOK(o.evidenceBranch, plan); err != nil {
			return err
		}
	}
	fleetName := cmp.Or(plan.Name, sampleRepo)
	m = metrics.New(nil, fleetName)

	// The simulated fleet reads the repository on its own, as each site's Flux would.
	follower, err := gitops.Open(ctx, repoURL, gitops.ServeHistory("main", 0, 0)...)
	if err != nil {
		return err
	}
	simFleet, simDone := startSimFleet(ctx, follower, plan, log)
	defer simDone()
	defer cancel()

	tc, _, err := g.temporal.dial(ctx, log, m.Temporal(), ts.Address)
	if err != nil {
		return err
	}
	defer tc.Close()
	n := newNode(log, tc, m, fleetName, "", plan.SourceBranch, secret)
	m.WatchRollouts(n.fw, fleetName)
	n.head = headOf(writer, plan.SourceBranch)
	n.publicURL = cmp.Or(os.Getenv(envPublicURL), "http://"+o.http)
	if n.reportTTL, err = reportLinkTTL(); err != nil {
		return err
	}
	n.setupSlack(log, ts.UI, "default")
	n.keepEvidence(writer, o.evidenceBranch)
	w, err := n.startWorker(writer, simFleet, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer w.Stop()
	httpURL, httpDone, err := serveHTTP(ctx, log, o.http, n.handler())
	if err != nil {
		return err
	}
	defer func() { <-httpDone }()
	defer cancel()

	intake, err := gitops.Open(ctx, repoURL)
	if err != nil {
		return err
	}
	hook.start(ctx, log, intake, plan.SourceBranch, httpURL+"/hooks/git", secret)

	fmt.Fprintf(g.stdout, "ui: %s\n", ts.UI)
	fmt.Fprintf(g.stdout, "git: %s\n", repoURL)
	fmt.Fprintf(g.stdout, "http: %s\n", httpURL)
	fmt.Fprintf(g.stdout, "temporal: %s\n", ts.Address)
	fmt.Fprintf(g.stdout, "clone the sample fleet: git clone %s\n", repoURL)
	fmt.Fprintf(g.stdout, "watch a rollout: TEMPORAL_ADDRESS=%s fleetwave status %s\n", ts.Address, workflows.RolloutID(fleetName, "<sha>"))

	if !o.noSample {
		// A rollout of the current head: new on a fresh sample, a no-op on a restart.
		hook.pushed(sampleRepo)
	}
	<-ctx.Done()
	log.Info("stopping")
	return nil
}

// seedSample creates the sample fleet repo unless it exists: a first commit that every site
// branch points at, then a second commit on main for the first rollout to move.
func seedSample(gs *gitserver.Server) error {
	dir := filepath.Join(gs.Root(), sampleRepo+".git")
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	files := map[string]string{}
	err := fs.WalkDir(sample, "sample", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sample.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("sample", path)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		return err
	}
	plan, err := parseSamplePlan(files["fleetwave.yaml"])
	if err != nil {
		return err
	}
	var branches []string
	for _, s := range plan.Sites {
		branches = append(branches, plan.SiteBranchFor(s.Name))
	}
	if _, err := gs.Init(sampleRepo); err != nil {
		return err
	}
	if _, err := gitserver.Commit(dir, "Sample fleet: podinfo 6.4.0 on six sites", files, branches...); err != nil {
		return err
	}
	bumped := map[string]string{"apps/podinfo/deployment.yaml": replaceOnce(files["apps/podinfo/deployment.yaml"], "podinfo:6.4.0", "podinfo:6.5.0")}
	if _, err := gitserver.Commit(dir, "podinfo: 6.4.0 -> 6.5.0", bumped); err != nil {
		return err
	}
	return nil
}

// pushNotifier turns pushes to the dev git server into signed push events for /hooks/git,
// once per new head of the source branch (pushes of promotion commits change only site
// branches and are not reported).
type pushNotifier struct {
	mu      sync.Mutex
	ctx     context.Context
	log     interface{ Warn(string, ...any) }
	intake  *gitops.Repo
	branch  string
	url     string
	secret  []byte
	last    string
	started bool
}

func (p *pushNotifier) start(ctx context.Context, log interface{ Warn(string, ...any) }, intake *gitops.Repo, branch, url string, secret []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ctx, p.log, p.intake, p.branch, p.url, p.secret, p.started = ctx, log, intake, branch, url, secret, true
}

func (p *pushNotifier) pushed(repo string) {
	if repo != sampleRepo {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		return
	}
	if err := p.intake.Refresh(p.ctx); err != nil {
		p.log.Warn("cannot read the pushed repository", "error", err)
		return
	}
	head, err := p.intake.Branch(p.branch)
	if errors.Is(err, gitops.ErrBranchNotFound) || head == p.last {
		return
	}
	if err != nil {
		p.log.Warn("cannot read the pushed repository", "error", err)
		return
	}
	if err := notifyPush(p.ctx, p.url, repo, p.branch, head, p.secret); err != nil {
		p.log.Warn("push not delivered", "revision", head, "error", err)
		return
	}
	p.last = head
}
