package rollout

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// APIVersion and Kind identify a rollout plan document.
const (
	APIVersion = "fleetwave.dev/v1alpha1"
	Kind       = "RolloutPlan"
)

// PlanFile is the path of the plan at the root of the fleet repo.
const PlanFile = "fleetwave.yaml"

// Rollback scopes: what is reverted when a site degrades.
const (
	ScopeSite = "site" // only the sites that degraded
	ScopeWave = "wave" // every site promoted in the failing wave
	ScopeAll  = "all"  // every site promoted by the rollout, in reverse wave order
)

// Plan is a validated rollout plan. Every wave's Sites are resolved, so the plan can travel
// through Temporal as plain data and be used without the file it came from.
type Plan struct {
	// Name names the fleet (metadata.name); empty when the file does not set it.
	Name         string
	SourceBranch string
	// SiteBranch is the branch template; "{site}" is replaced by the site name.
	SiteBranch string
	Sites      []Site
	Waves      []Wave
	Health     Health
	Rollback   Rollback
	// Policies are the built-in policies (spec.policies).
	Policies Policies `json:",omitempty"`
	// OnNewCommit says what a newer commit does to a rollout in progress: OnNewCommitSupersede
	// (the older one stops at a safe point, the newer starts) or OnNewCommitQueue (the newer
	// starts when the older ends).
	OnNewCommit string
	// Notify says where rollouts report their progress (spec.notify).
	Notify Notify `json:",omitempty"`
	// Warnings are what is allowed but likely not meant (a bake shorter than a failure
	// streak), each with its position; not part of the plan a rollout records.
	Warnings []Issue `json:"-"`
}

// OnNewCommit policies. Either way, one rollout per fleet promotes at a time.
const (
	OnNewCommitSupersede = "supersede"
	OnNewCommitQueue     = "queue"
)

// Site is one Kubernetes cluster running Flux.
type Site struct {
	Name     string
	Labels   map[string]string `json:",omitempty"`
	Timezone string            `json:",omitempty"`
	Cluster  *Cluster          `json:",omitempty"`
	// From is where a site read from spec.siteFiles is defined ("sites/ams-1.yaml:1"); empty
	// for a site of the plan file. Not part of the plan a rollout records.
	From string `json:"-"`
}

// Cluster says where a site's Flux lives: a kubeconfig context and the Kustomization that
// applies the site branch ("namespace/name"), or several (a root and its children, such as
// infrastructure and apps): every one must apply the promotion and be Ready.
type Cluster struct {
	Context        string   `json:",omitempty"`
	Kustomization  string   `json:",omitempty"`
	Kustomizations []string `json:",omitempty"`
}

// Wave is an ordered group of sites promoted together.
type Wave struct {
	Name string
	// Selector matches site labels; nil when the wave lists sites explicitly or takes the rest.
	Selector map[string]string `json:",omitempty"`
	// Explicit is the site list written in the plan, if any.
	Explicit []string `json:",omitempty"`
	// Percent, when above 0, takes this share of the fleet's sites (rounded up, at least 1)
	// from those no earlier wave claimed and the Selector matches: the same sites for the same
	// plan, chosen by a hash of the fleet and site names (see pickPercent).
	Percent float64 `json:",omitempty"`
	// Spread, with Percent, draws the wave's sites in proportion from each value of this label,
	// at least one per value when the wave has room.
	Spread string `json:",omitempty"`
	// Sites are the resolved members, in the order the plan lists its sites.
	Sites []string
	// MaxParallel is how many sites are promoted at once; batches converge before the next starts.
	MaxParallel int
	// Bake is how long the whole wave must stay healthy after converging.
	Bake time.Duration
	// MinSoak overrides Policies.MinSoak for this wave; nil means the plan's.
	MinSoak *time.Duration `json:",omitempty"`
	// Approval, when set, holds the wave until its approvers approve it.
	Approval *Approval `json:",omitempty"`
	// MaxFailures is the wave's failure budget: how many of its sites may degrade (each is
	// reverted alone) while the wave goes on. The zero value allows none.
	MaxFailures FailureBudget `json:",omitzero"`
}

// FailureBudget is how many sites of a wave may degrade while the wave goes on: a count, or a
// percentage of the wave's sites, rounded down (what Argo CD progressive syncs and Rancher
// Fleet call maxUnavailable).
type FailureBudget struct {
	Count   int `json:",omitempty"`
	Percent int `json:",omitempty"`
}

// Allowed returns how many of a wave's sites may degrade.
func (b FailureBudget) Allowed(sites int) int {
	if b.Percent > 0 {
		return sites * b.Percent / 100
	}
	return b.Count
}

// String returns the budget as the plan writes it: "2" or "5%".
func (b FailureBudget) String() string {
	if b.Percent > 0 {
		return strconv.Itoa(b.Percent) + "%"
	}
	return strconv.Itoa(b.Count)
}

// Rest reports whether the wave takes every site not claimed by an earlier wave.
func (w Wave) Rest() bool { return w.Selector == nil && w.Explicit == nil && w.Percent == 0 }

// Batches splits the wave's sites into groups of at most MaxParallel, in order.
func (w Wave) Batches() [][]string {
	size := w.MaxParallel
	if size <= 0 {
		size = len(w.Sites)
	}
	var out [][]string
	for start := 0; start < len(w.Sites); start += size {
		end := min(start+size, len(w.Sites))
		out = append(out, w.Sites[start:end])
	}
	return out
}

// Health says how sites are judged after a promotion.
type Health struct {
	// ConvergenceTimeout bounds the wait for a site to apply the promotion commit.
	ConvergenceTimeout time.Duration
	// Interval is the time between health checks during bake.
	Interval time.Duration
	// FailureThreshold is the number of consecutive failed checks that make a site Degraded.
	FailureThreshold int
	// UnknownTimeout is how long a site may stay Unknown (unreachable) before the wave fails closed.
	UnknownTimeout time.Duration
	// Checks run against every site of a wave on every health round of its bake.
	Checks []Check `json:",omitempty"`
	// Watch says how long a promoted site stays observed: WatchRollout (the default, also
	// when empty) until the rollout ends, WatchWave until its own wave ended.
	Watch string `json:",omitempty"`
	// Offline says what happens to a site that cannot be observed when its batch is promoted,
	// or after its promotion was pushed and before it applied it.
	Offline Offline `json:",omitzero"`
}

// Offline is the plan's health.offline: a site fleetwave could not observe for After is
// Offline; with Action OfflineDefer it is Deferred (its batch goes on without it, and an
// unapplied promotion is withdrawn), at most MaxDeferred of a wave's sites; with OfflineFail
// (the default, also when empty) it is judged as any unreachable site: degraded after
// convergenceTimeout.
type Offline struct {
	After       time.Duration `json:",omitempty"`
	Action      string        `json:",omitempty"`
	MaxDeferred FailureBudget `json:",omitzero"`
	// Probe is how often a catch-up probes a Deferred site after its rollout ended, until it
	// answers (DefaultOfflineProbe when the plan leaves it out).
	Probe time.Duration `json:",omitempty"`
}

// Offline actions.
const (
	OfflineFail  = "fail"
	OfflineDefer = "defer"
)

// DefaultOfflineAfter is how long a site must be unobservable to be Offline when the plan's
// health.offline leaves after out.
const DefaultOfflineAfter = 2 * time.Minute

// DefaultOfflineProbe is how often a catch-up probes its Deferred site when the plan's
// health.offline leaves probe out.
const DefaultOfflineProbe = time.Minute

// Defers reports whether offline sites are deferred (health.offline.action defer).
func (h Health) Defers() bool { return h.Offline.Action == OfflineDefer }

// Watches: how long a promoted site stays observed.
const (
	WatchRollout = "rollout"
	WatchWave    = "wave"
)

// WatchesRollout reports whether sites stay observed until the rollout ends.
func (h Health) WatchesRollout() bool { return h.Watch != WatchWave }

// MaxWaves is the most waves a plan may have: every wave is a child workflow and a row of the
// rollout's status, and a rollout's history must stay bounded.
const MaxWaves = 64

// ShortestGate says the least a wave's health gate takes once its last batch converged: the
// bake, observed every Interval, and a clean last round of every site ("1 clean round" for a
// bake of 0). A site failing at the end keeps the gate open until it passes or degrades.
func (h Health) ShortestGate(bake time.Duration) string {
	if bake <= 0 || h.Interval <= 0 {
		return "1 clean round"
	}
	rounds := int((bake+h.Interval-1)/h.Interval) + 1
	return fmt.Sprintf("%s, %s", bake, Count(rounds, "round"))
}

// Rollback says what happens when a site degrades.
type Rollback struct {
	// Automatic reverts through git; when false the rollout only stops.
	Automatic bool
	Scope     string
}

// Defaults applied when the plan leaves a field out.
const (
	DefaultSourceBranch       = "main"
	DefaultSiteBranch         = "sites/{site}"
	DefaultConvergenceTimeout = 10 * time.Minute
	DefaultInterval           = 30 * time.Second
	DefaultFailureThreshold   = 3
	DefaultUnknownTimeout     = 5 * time.Minute
)

// SiteBranchFor returns the site branch of the named site.
func (p *Plan) SiteBranchFor(site string) string {
	return strings.ReplaceAll(p.SiteBranch, "{site}", site)
}

// Site returns the named site.
func (p *Plan) Site(name string) (Site, bool) {
	for _, s := range p.Sites {
		if s.Name == name {
			return s, true
		}
	}
	return Site{}, false
}

// SitesOf returns the named sites' settings, in the order of names; a name the plan does not
// define gets a Site with only its name. It looks each up once, so a wave of thousands of
// sites costs one pass over the plan.
func (p *Plan) SitesOf(names []string) []Site {
	site := SitesByName(p.Sites)
	out := make([]Site, len(names))
	for i, name := range names {
		out[i] = site(name)
	}
	return out
}

// SitesByName returns a lookup of sites by name, indexed once; a name not among them gets a
// Site with only its name.
func SitesByName(sites []Site) func(name string) Site {
	byName := make(map[string]int, len(sites))
	for i, s := range sites {
		byName[s.Name] = i
	}
	return func(name string) Site {
		if i, ok := byName[name]; ok {
			return sites[i]
		}
		return Site{Name: name}
	}
}

// CatchUp returns the plan of a catch-up of one site (a site Deferred by a rollout that
// succeeded, promoted once it is back): the site's wave with the site alone, one batch, no
// failure budget and no approval (the rollout that deferred the site had it approved), and
// room to defer the site once more; its bake, health settings, checks and policies are the
// plan's. A site the plan no longer has in
// a wave is an error: membership is what the commit says.
func (p *Plan) CatchUp(site string) (*Plan, error) {
	for _, w := range p.Waves {
		if !slices.Contains(w.Sites, site) {
			continue
		}
		w.Sites, w.Explicit, w.Selector, w.Percent, w.Spread = []string{site}, []string{site}, nil, 0, ""
		w.MaxParallel, w.MaxFailures, w.Approval = 1, FailureBudget{}, nil
		q := *p
		q.Waves = []Wave{w}
		if q.Health.Defers() {
			// Offline again: deferred once more (and probed again), not a failed wave.
			q.Health.Offline.MaxDeferred = FailureBudget{Count: 1}
		}
		return &q, nil
	}
	return nil, fmt.Errorf("site %s is in no wave of the plan", site)
}

// Wave returns the named wave and its index.
func (p *Plan) Wave(name string) (Wave, int, bool) {
	for i, w := range p.Waves {
		if w.Name == name {
			return w, i, true
		}
	}
	return Wave{}, -1, false
}
