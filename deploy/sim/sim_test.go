package sim

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
)

// clock is a fake clock the test moves forward by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lab is a fleet repo served over HTTP by git http-backend, a gitops.Repo following it and a
// simulated fleet on a fake clock.
type lab struct {
	*gittest.Server // the fleet repo; its Seed is on main and every site branch
	t               *testing.T
	ctx             context.Context
	clock           *clock
	fleet           *Fleet
}

var sites = []string{"ams-1", "ams-2"}

func newLab(t *testing.T, opts ...Option) *lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s := gittest.NewServer(t, "fleet", map[string]string{"apps/app.yaml": "version: 1\n"}, "sites/ams-1", "sites/ams-2")
	l := &lab{Server: s, t: t, ctx: ctx, clock: &clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}}
	src, err := gitops.Open(ctx, l.URL)
	if err != nil {
		t.Fatal(err)
	}
	l.fleet = New(src, "sites/{site}", append([]Option{WithClock(l.clock.Now)}, opts...)...)
	l.fleet.Track(sites...)
	return l
}

// commitOn commits files (content "" deletes) on top of branch with the git CLI, pushes it over
// HTTP and returns the new sha.
func (l *lab) commitOn(branch, msg string, files map[string]string) string {
	l.t.Helper()
	return l.CommitOn(l.t, branch, msg, files)
}

func (l *lab) step() {
	l.t.Helper()
	if err := l.fleet.Step(l.ctx); err != nil {
		l.t.Fatalf("Step: %v", err)
	}
}

func (l *lab) observe(site string) rollout.SiteState {
	l.t.Helper()
	st, err := l.fleet.Observe(l.ctx, rollout.Site{Name: site})
	if err != nil {
		l.t.Fatalf("Observe(%s): %v", site, err)
	}
	return st
}

// healthy is what a site that applied hash with a passing check reports.
func (l *lab) healthy(site, hash string, reconciling bool) rollout.SiteState {
	rev := "sites/" + site + "@sha1:" + hash
	return rollout.SiteState{
		Site: site, Reachable: true, Revision: rev, Ready: true, Reconciling: reconciling,
		Message:    "Applied revision: " + rev,
		Checks:     []rollout.CheckResult{{Name: CheckName, OK: true, Value: 0, Threshold: "== 0"}},
		ObservedAt: l.clock.Now(),
	}
}

// revision returns the hash a site reports having applied.
func (l *lab) revision(site string) string {
	l.t.Helper()
	return rollout.RevisionHash(l.observe(site).Revision)
}

// TestApplyAfterReconcileDelay: a new head of a site branch is pending (Reconciling) until the
// reconcileDelay of its own sim.yaml has passed, then it is the applied revision, in Flux's
// format; a newer head restarts the wait and the superseded commit is never applied.
func TestApplyAfterReconcileDelay(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	for _, s := range sites {
		if diff := cmp.Diff(l.healthy(s, l.Seed, false), l.observe(s)); diff != "" {
			t.Errorf("initial %s (-want +got):\n%s", s, diff)
		}
	}

	b := l.commitOn("sites/ams-1", "slow", map[string]string{ConfigFile: "reconcileDelay: 2s\n"})
	l.step()
	if diff := cmp.Diff(l.healthy("ams-1", l.Seed, true), l.observe("ams-1")); diff != "" {
		t.Errorf("ams-1 right after the push (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(l.healthy("ams-2", l.Seed, false), l.observe("ams-2")); diff != "" {
		t.Errorf("ams-2 is not affected (-want +got):\n%s", diff)
	}
	l.clock.Advance(2*time.Second - time.Millisecond)
	l.step()
	if got := l.observe("ams-1"); got.Revision != "sites/ams-1@sha1:"+l.Seed || !got.Reconciling || got.Converged(b) {
		t.Errorf("1.999s after the push: %+v, want the seed still applied and reconciling", got)
	}
	l.clock.Advance(time.Millisecond)
	l.step()
	got := l.observe("ams-1")
	if diff := cmp.Diff(l.healthy("ams-1", b, false), got); diff != "" {
		t.Errorf("2s after the push (-want +got):\n%s", diff)
	}
	if !got.Converged(b) {
		t.Errorf("Converged(%s) = false for %+v", rollout.Short(b), got)
	}

	// Without a sim.yaml the delay is DefaultReconcileDelay.
	c := l.commitOn("sites/ams-1", "default delay", map[string]string{ConfigFile: ""})
	l.step()
	l.clock.Advance(DefaultReconcileDelay - time.Millisecond)
	l.step()
	if got := l.revision("ams-1"); got != b {
		t.Errorf("before the default delay: applied %s, want %s", rollout.Short(got), rollout.Short(b))
	}
	l.clock.Advance(time.Millisecond)
	l.step()
	if got := l.revision("ams-1"); got != c {
		t.Errorf("after the default delay: applied %s, want %s", rollout.Short(got), rollout.Short(c))
	}

	// A head superseded while pending is skipped, and the newer head waits its own full delay.
	d := l.commitOn("sites/ams-1", "superseded", map[string]string{ConfigFile: "reconcileDelay: 2s\n"})
	l.step()
	l.clock.Advance(time.Second)
	e := l.commitOn("sites/ams-1", "newer", map[string]string{ConfigFile: "reconcileDelay: 2s\n", "apps/app.yaml": "version: 3\n"})
	l.step()
	l.clock.Advance(1500 * time.Millisecond) // d's delay has passed, e's has not
	l.step()
	if got := l.revision("ams-1"); got != c {
		t.Errorf("while %s is pending: applied %s, want %s (never %s)", rollout.Short(e), rollout.Short(got), rollout.Short(c), rollout.Short(d))
	}
	l.clock.Advance(500 * time.Millisecond)
	l.step()
	if got := l.revision("ams-1"); got != e {
		t.Errorf("applied %s, want %s", rollout.Short(got), rollout.Short(e))
	}
}

// TestConfigOfAppliedCommit promotes a commit whose sim.yaml degrades ams-1 with
// gitops.Repo.Promote: until the sites apply it their health follows the commit they run, then
// ams-1's sim check fails while ams-2's passes.
func TestConfigOfAppliedCommit(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	src := l.commitOn("main", "degrade ams-1", map[string]string{ConfigFile: "reconcileDelay: 3s\ndegraded: [ams-1]\n", "apps/app.yaml": "version: 2\n"})
	writer, err := gitops.Open(l.ctx, l.URL)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := writer.Promote(l.ctx, gitops.PromoteRequest{Rollout: "r1", Wave: "all", Source: src,
		Targets: []gitops.Target{{Site: "ams-1", Branch: "sites/ams-1"}, {Site: "ams-2", Branch: "sites/ams-2"}}})
	if err != nil {
		t.Fatal(err)
	}
	promoted := map[string]string{}
	for _, c := range changes {
		promoted[c.Site] = c.Commit
	}

	l.step()
	for _, s := range sites {
		if diff := cmp.Diff(l.healthy(s, l.Seed, true), l.observe(s)); diff != "" {
			t.Errorf("%s while the degrading commit is pending (-want +got):\n%s", s, diff)
		}
	}
	l.clock.Advance(3 * time.Second)
	l.step()

	got := l.observe("ams-1")
	want := l.healthy("ams-1", promoted["ams-1"], false)
	want.Checks[0].OK, want.Checks[0].Value = false, 1
	want.Checks[0].Message = ConfigFile + " at " + rollout.Short(promoted["ams-1"]) + " lists the site as degraded"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ams-1 after applying (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(l.healthy("ams-2", promoted["ams-2"], false), l.observe("ams-2")); diff != "" {
		t.Errorf("ams-2 after applying (-want +got):\n%s", diff)
	}
}

// TestDegradedAndUnreachable: "*" degrades every site, and an unreachable site reports
// Reachable false with a message and no revision.
func TestDegradedAndUnreachable(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	for _, s := range sites {
		l.commitOn("sites/"+s, "degrade all", map[string]string{ConfigFile: "reconcileDelay: 0s\ndegraded: ['*']\n"})
	}
	l.step()
	for _, s := range sites {
		st := l.observe(s)
		if len(st.Checks) != 1 || st.Checks[0].OK || st.Checks[0].Value != 1 || !st.Ready || !st.Reachable {
			t.Errorf("%s with degraded [*]: %+v, want a failing sim check", s, st)
		}
	}

	a := l.commitOn("sites/ams-2", "ams-2 unreachable", map[string]string{ConfigFile: "reconcileDelay: 0s\nunreachable: [ams-2]\n"})
	l.step()
	want := rollout.SiteState{Site: "ams-2", ObservedAt: l.clock.Now(),
		Message: "simulated outage: " + ConfigFile + " at " + rollout.Short(a) + " lists the site as unreachable"}
	if diff := cmp.Diff(want, l.observe("ams-2")); diff != "" {
		t.Errorf("unreachable ams-2 (-want +got):\n%s", diff)
	}
	if st := l.observe("ams-1"); !st.Reachable {
		t.Errorf("ams-1 is not listed but reports %+v", st)
	}
}

// TestBrokenConfigStalls: a sim.yaml that does not parse makes the site Stalled at that commit,
// with the file and the line:column in the message, so Flux "failed" at it.
func TestBrokenConfigStalls(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	for _, tc := range []struct {
		site, config, pos string
	}{
		{"ams-1", "reconcileDelay: 0s\ndegraded: [ams-1\n", ":2:11: "},
		{"ams-2", "reconcileDelay: 0s\nbogus: true\n", ":2:1: "},
	} {
		h := l.commitOn("sites/"+tc.site, "broken", map[string]string{ConfigFile: tc.config})
		l.step()
		st := l.observe(tc.site)
		if !st.Reachable || !st.Stalled || st.Ready || !st.Applied(h) || !st.FluxFailed(h) || st.Converged(h) {
			t.Errorf("%s with %q: %+v, want reachable, stalled at %s", tc.site, tc.config, st, rollout.Short(h))
		}
		if !strings.Contains(st.Message, ConfigFile) || !strings.Contains(st.Message, tc.pos) {
			t.Errorf("%s message %q does not name %s and %s", tc.site, st.Message, ConfigFile, tc.pos)
		}
	}

	// Fixing the file un-stalls the site once the fix is applied.
	fix := l.commitOn("sites/ams-1", "fix", map[string]string{ConfigFile: "reconcileDelay: 0s\n"})
	l.step()
	if st := l.observe("ams-1"); !st.Converged(fix) {
		t.Errorf("after the fix: %+v, want converged at %s", st, rollout.Short(fix))
	}
}

// TestMissingSiteBranch: a site without its branch (never created, or deleted) is unreachable
// with a message naming the branch, and comes back when the branch does.
func TestMissingSiteBranch(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	want := rollout.SiteState{Site: "ghost", ObservedAt: l.clock.Now(), Message: "site branch sites/ghost does not exist"}
	if diff := cmp.Diff(want, l.observe("ghost")); diff != "" {
		t.Errorf("untracked site without a branch (-want +got):\n%s", diff)
	}

	// The branch appears: the site applies it after the delay and reports no revision before.
	gittest.Git(t, l.Dir, "update-ref", "refs/heads/sites/ghost", l.Seed)
	l.step()
	want = rollout.SiteState{Site: "ghost", Reachable: true, Reconciling: true, ObservedAt: l.clock.Now(),
		Message: "applying sites/ghost@sha1:" + l.Seed + " for the first time"}
	if diff := cmp.Diff(want, l.observe("ghost")); diff != "" {
		t.Errorf("ghost while applying its new branch (-want +got):\n%s", diff)
	}
	l.clock.Advance(DefaultReconcileDelay)
	l.step()
	if diff := cmp.Diff(l.healthy("ghost", l.Seed, false), l.observe("ghost")); diff != "" {
		t.Errorf("ghost after applying (-want +got):\n%s", diff)
	}

	gittest.Git(t, l.Dir, "update-ref", "-d", "refs/heads/sites/ams-2")
	l.step()
	st := l.observe("ams-2")
	if st.Reachable || st.Message != "site branch sites/ams-2 does not exist" {
		t.Errorf("ams-2 after its branch was deleted: %+v", st)
	}

	gittest.Git(t, l.Dir, "update-ref", "refs/heads/sites/ams-2", l.Seed)
	l.step()
	if diff := cmp.Diff(l.healthy("ams-2", l.Seed, false), l.observe("ams-2")); diff != "" {
		t.Errorf("ams-2 after its branch is back (-want +got):\n%s", diff)
	}
}

// TestObserveCanceled: Observe honours its context.
func TestObserveCanceled(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.fleet.Observe(ctx, rollout.Site{Name: "ams-1"}); err == nil {
		t.Error("Observe with a canceled context succeeded")
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in  string
		want      Config
		wantDelay time.Duration
		wantErr   string // regexp; "" means no error
	}{
		{name: "empty", in: "", wantDelay: DefaultReconcileDelay},
		{name: "comment only", in: "# nothing\n", wantDelay: DefaultReconcileDelay},
		{name: "full", in: "reconcileDelay: 250ms\ndegraded: [ams-1]\nunreachable: ['*']\n",
			want: Config{ReconcileDelay: "250ms", Degraded: []string{"ams-1"}, Unreachable: []string{"*"}}, wantDelay: 250 * time.Millisecond},
		{name: "zero delay", in: "reconcileDelay: 0s\n", want: Config{ReconcileDelay: "0s"}, wantDelay: 0},
		{name: "bad duration", in: "reconcileDelay: soon\n", wantErr: `^\.fleetwave/sim\.yaml: invalid reconcileDelay "soon"$`},
		{name: "negative duration", in: "reconcileDelay: -1s\n", wantErr: `invalid reconcileDelay "-1s"`},
		{name: "unknown field", in: "reconcileDelay: 1s\nbogus: 1\n", wantErr: `^\.fleetwave/sim\.yaml:2:1: unknown field "bogus"`},
		{name: "syntax error", in: "degraded: [ams-1\n", wantErr: `^\.fleetwave/sim\.yaml:1:11: `},
		{name: "wrong type", in: "degraded: ams-1\n", wantErr: `^\.fleetwave/sim\.yaml:1:11: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, delay, err := ParseConfig([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !regexp.MustCompile(tc.wantErr).MatchString(err.Error()) {
					t.Fatalf("error %v, want one matching %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if delay != tc.wantDelay {
				t.Errorf("delay %s, want %s", delay, tc.wantDelay)
			}
		})
	}
}

// slowSource is a Source whose file reads wait until released, and say when one started.
type slowSource struct {
	heads   map[string]string
	reading chan struct{}
	release chan struct{}
}

func (s *slowSource) Refresh(context.Context) error { return nil }

func (s *slowSource) Branch(name string) (string, error) { return s.heads[name], nil }

func (s *slowSource) ReadFile(commit, path string) ([]byte, error) {
	s.reading <- struct{}{}
	<-s.release
	return nil, gitops.ErrFileNotFound
}

// TestObserveWhileStepReads: a Step reading the sim.yaml of new heads (thousands of them when a
// large wave is pushed) does not hold up observations; before, it held the fleet, and a
// convergence wait observing site after site saw its first sites late, past its deadline.
func TestObserveWhileStepReads(t *testing.T) {
	t.Parallel()
	src := &slowSource{heads: map[string]string{"sites/a": "c1"}, reading: make(chan struct{}), release: make(chan struct{})}
	f := New(src, "sites/{site}", WithReconcileDelay(0))
	go func() { // Track reads c1's sim.yaml
		<-src.reading
		src.release <- struct{}{}
	}()
	f.Track("a")
	src.heads["sites/a"] = "c2"
	stepped := make(chan error, 1)
	go func() { stepped <- f.Step(context.Background()) }()
	<-src.reading // the Step reads c2's sim.yaml, and waits

	observed := make(chan rollout.SiteState, 1)
	go func() {
		st, _ := f.Observe(context.Background(), rollout.Site{Name: "a"})
		observed <- st
	}()
	select {
	case st := <-observed:
		if st.Revision != "sites/a@sha1:c1" {
			t.Errorf("observed %q during the Step, want c1 still", st.Revision)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Observe waited for the Step's file reads")
	}
	src.release <- struct{}{}
	if err := <-stepped; err != nil {
		t.Fatal(err)
	}
	st, err := f.Observe(context.Background(), rollout.Site{Name: "a"})
	if err != nil || st.Revision != "sites/a@sha1:c2" {
		t.Errorf("after the Step: %q (%v), want c2", st.Revision, err)
	}
}
