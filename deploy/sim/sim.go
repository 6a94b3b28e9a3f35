package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
)

// ConfigFile is where a commit describes how simulated sites behave when they apply it.
const ConfigFile = ".fleetwave/sim.yaml"

// DefaultReconcileDelay is how long a site takes to apply a commit without a sim.yaml.
const DefaultReconcileDelay = time.Second

// CheckName names the simulated health check.
const CheckName = "sim"

// Config is the content of .fleetwave/sim.yaml.
type Config struct {
	ReconcileDelay string   `yaml:"reconcileDelay"`
	Degraded       []string `yaml:"degraded"`
	Unreachable    []string `yaml:"unreachable"`
}

// ParseConfig parses a sim.yaml; errors carry line and column.
func ParseConfig(data []byte) (Config, time.Duration, error) {
	var c Config
	if err := yaml.UnmarshalWithOptions(data, &c, yaml.Strict()); err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
			pos := ye.GetToken().Position
			return Config{}, 0, fmt.Errorf("%s:%d:%d: %s", ConfigFile, pos.Line, pos.Column, ye.GetMessage())
		}
		return Config{}, 0, fmt.Errorf("%s: %v", ConfigFile, err)
	}
	delay := DefaultReconcileDelay
	if c.ReconcileDelay != "" {
		d, err := time.ParseDuration(c.ReconcileDelay)
		if err != nil || d < 0 {
			return Config{}, 0, fmt.Errorf("%s: invalid reconcileDelay %q", ConfigFile, c.ReconcileDelay)
		}
		delay = d
	}
	return c, delay, nil
}

func lists(list []string, site string) bool {
	return slices.Contains(list, site) || slices.Contains(list, "*")
}

// Source is the part of a git repository the fleet reads.
type Source interface {
	Refresh(ctx context.Context) error
	Branch(name string) (string, error)
	ReadFile(commit, path string) ([]byte, error)
}

// Fleet is a set of simulated sites. It implements deploy.Driver.
type Fleet struct {
	src        Source
	siteBranch string
	poll       time.Duration
	now        func() time.Time
	log        *slog.Logger

	mu    sync.Mutex
	sites map[string]*site
	// script is the rehearsal's faults (WithScript); promotions caches which applied commits
	// promote its commit, effects what its faults did.
	script     *Script
	promotions map[string]bool
	effects    map[effectKey]*FaultEffect
	// reconcile is how long a site takes to apply a commit without a sim.yaml.
	reconcile time.Duration
	// kick asks Run for a Step now (RequestReconcile); watchers are told after a Step in which
	// a site applied a commit (Watch).
	kick     chan struct{}
	watchers map[chan struct{}]struct{}
}

type site struct {
	branch string
	// applied is what the site runs; pending is the branch head it is applying, since when.
	applied, pending string
	since            time.Time
	// appliedAt is when the site applied what it runs.
	appliedAt time.Time
	delay     time.Duration
	// cfg is the sim.yaml of the applied commit, next that of the pending one.
	cfg, next       Config
	cfgErr, nextErr error
	missing         bool
}

// Option configures a Fleet.
type Option func(*Fleet)

// WithPoll sets how often the fleet fetches the repository (default 300ms).
func WithPoll(d time.Duration) Option { return func(f *Fleet) { f.poll = d } }

// WithClock replaces the clock.
func WithClock(now func() time.Time) Option { return func(f *Fleet) { f.now = now } }

// WithReconcileDelay sets how long a site takes to apply a commit whose sim.yaml does not say
// (default DefaultReconcileDelay).
func WithReconcileDelay(d time.Duration) Option { return func(f *Fleet) { f.reconcile = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(f *Fleet) { f.log = l } }

// New returns a fleet whose sites follow the branches named by the siteBranch template
// ("sites/{site}") in src. Sites are added by Track, or when first observed.
func New(src Source, siteBranch string, opts ...Option) *Fleet {
	f := &Fleet{src: src, siteBranch: siteBranch, poll: 300 * time.Millisecond, now: time.Now,
		log: slog.New(slog.DiscardHandler), sites: map[string]*site{}, reconcile: DefaultReconcileDelay,
		promotions: map[string]bool{}, effects: map[effectKey]*FaultEffect{},
		kick: make(chan struct{}, 1), watchers: map[chan struct{}]struct{}{}}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Track adds sites that are running whatever their branch head is now.
func (f *Fleet) Track(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.track(n)
	}
}

func (f *Fleet) track(name string) *site {
	if s, ok := f.sites[name]; ok {
		return s
	}
	s := &site{branch: strings.ReplaceAll(f.siteBranch, "{site}", name)}
	if head, err := f.src.Branch(s.branch); err == nil {
		s.applied, s.pending, s.appliedAt = head, head, f.now()
		s.cfg, s.delay, s.cfgErr = f.config(head)
	} else {
		s.missing = true
	}
	f.sites[name] = s
	return s
}

func (f *Fleet) config(commit string) (Config, time.Duration, error) {
	data, err := f.src.ReadFile(commit, ConfigFile)
	if errors.Is(err, gitops.ErrFileNotFound) {
		return Config{}, f.reconcile, nil
	}
	if err != nil {
		return Config{}, f.reconcile, err
	}
	return ParseConfig(data)
}

// Run fetches and advances the sites every poll interval until ctx ends, and at once when asked
// (RequestReconcile) or when a site is due to finish applying, as Flux reconciles on its
// interval, on a reconcile request, and when an apply ends.
func (f *Fleet) Run(ctx context.Context) error {
	t := time.NewTimer(f.poll)
	defer t.Stop()
	var last string
	for {
		err := f.Step(ctx)
		switch {
		case err != nil && ctx.Err() == nil && err.Error() != last:
			f.log.Warn("simulated fleet cannot read the repository", "error", err)
			last = err.Error()
		case err == nil && last != "":
			f.log.Info("simulated fleet reads the repository again")
			last = ""
		}
		t.Reset(f.nextStep())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-f.kick:
		}
	}
}

// nextStep is the time until the next Step: the poll interval, or less when a site finishes
// applying before then.
func (f *Fleet) nextStep() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	wait, now := f.poll, f.now()
	for _, s := range f.sites {
		if s.applied != s.pending && !s.missing {
			wait = min(wait, max(s.since.Add(s.delay).Sub(now), time.Millisecond))
		}
	}
	return wait
}

// Simulated says the fleet is not real (deploy.Simulator).
func (f *Fleet) Simulated() bool { return true }

// RequestReconcile asks the fleet to fetch the repository and advance its sites now, as Flux's
// reconcile request does; requests made while one is pending are served by the same Step.
func (f *Fleet) RequestReconcile(ctx context.Context, _ rollout.Site) error {
	deploy.Notify(f.kick)
	return ctx.Err()
}

// Watch tells, until ctx ends, when a Step made a site apply a commit (any site, not only
// those named: a spurious wake only costs an observation).
func (f *Fleet) Watch(ctx context.Context, _ []rollout.Site) (<-chan struct{}, error) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.watchers[ch] = struct{}{}
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		delete(f.watchers, ch)
		f.mu.Unlock()
	})
	return ch, nil
}

// Step fetches the repository once and lets every site move forward: a new branch head starts
// applying, and a commit whose reconcileDelay has passed becomes the applied one.
func (f *Fleet) Step(ctx context.Context) error {
	if err := f.src.Refresh(ctx); err != nil {
		return err
	}
	// Read the heads, and the sim.yaml of the new ones, without holding the fleet, so that
	// observations go on meanwhile: when a wave of thousands of sites is pushed, that is
	// thousands of files to read.
	type read struct {
		branch, pending string // the site's, when the Step began
		head            string
		missing         bool
		cfg             Config
		delay           time.Duration
		err             error
	}
	f.mu.Lock()
	reads := make(map[string]read, len(f.sites))
	for name, s := range f.sites {
		reads[name] = read{branch: s.branch, pending: s.pending}
	}
	f.mu.Unlock()
	for name, r := range reads {
		head, err := f.src.Branch(r.branch)
		r.head, r.missing = head, err != nil
		if !r.missing && head != r.pending {
			r.cfg, r.delay, r.err = f.config(head)
		}
		reads[name] = r
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	changed := false
	for name, r := range reads {
		s := f.sites[name]
		if r.missing {
			s.missing = true
			continue
		}
		s.missing = false
		if f.scriptOffline(name, now) {
			// Offline: it cannot fetch its branch either, until it is back.
			continue
		}
		if r.head != s.pending {
			if r.head == r.pending {
				// Another Step moved the site meanwhile: read this head's sim.yaml now.
				r.cfg, r.delay, r.err = f.config(r.head)
			}
			s.pending, s.since = r.head, now
			s.next, s.nextErr = r.cfg, r.err
			s.delay = f.reconcileDelay(name, r.head, r.delay, now)
		}
		if s.applied != s.pending && now.Sub(s.since) >= s.delay {
			s.applied, s.appliedAt = s.pending, now
			s.cfg, s.cfgErr = s.next, s.nextErr
			changed = true
			f.log.Info("simulated site applied", "site", name, "revision", rollout.FormatRevision(s.branch, s.applied))
		}
	}
	if changed {
		for ch := range f.watchers {
			deploy.Notify(ch)
		}
	}
	return nil
}

// Observe reports what the site applied and how healthy it is, as a Flux Kustomization and a
// health check would.
func (f *Fleet) Observe(ctx context.Context, st rollout.Site) (rollout.SiteState, error) {
	if err := ctx.Err(); err != nil {
		return rollout.SiteState{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.track(st.Name)
	out := rollout.SiteState{Site: st.Name, ObservedAt: f.now()}
	switch {
	case s.missing:
		out.Message = fmt.Sprintf("site branch %s does not exist", s.branch)
		return out, nil
	case lists(s.cfg.Unreachable, st.Name):
		out.Message = fmt.Sprintf("simulated outage: %s at %s lists the site as unreachable", ConfigFile, rollout.Short(s.applied))
		return out, nil
	}
	now := out.ObservedAt
	if why := f.scriptUnreachable(st.Name, now); why != "" {
		out.Message = why
		return out, nil
	}
	out.Reachable = true
	if s.applied == "" {
		// The branch appeared after the site was first observed: nothing applied yet, as a new
		// Kustomization has no lastAppliedRevision.
		out.Reconciling = true
		out.Message = fmt.Sprintf("applying %s for the first time", rollout.FormatRevision(s.branch, s.pending))
		return out, nil
	}
	out.Revision = rollout.FormatRevision(s.branch, s.applied)
	out.Reconciling = s.pending != s.applied
	if s.cfgErr != nil {
		out.Stalled = true
		out.Message = s.cfgErr.Error()
		return out, nil
	}
	out.Ready = true
	out.Message = "Applied revision: " + out.Revision
	check := rollout.CheckResult{Name: CheckName, OK: true, Value: 0, Threshold: "== 0"}
	if lists(s.cfg.Degraded, st.Name) {
		check.OK = false
		check.Value = 1
		check.Message = fmt.Sprintf("%s at %s lists the site as degraded", ConfigFile, rollout.Short(s.applied))
	} else if why := f.scriptFailing(st.Name, s, now); why != "" {
		check.OK, check.Value, check.Message = false, 1, why
	}
	out.Checks = []rollout.CheckResult{check}
	return out, nil
}
