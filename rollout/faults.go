package rollout

import (
	"fmt"
	"path"
	"slices"
	"time"
)

// KindFaults identifies a rehearsal's faults file (`fleetwave rehearse --faults`).
const KindFaults = "RehearsalFaults"

// Faults are what a rehearsal does to its simulated fleet and git server, in the order of the
// file. Times and durations are on the plan's time scale, from the start of the rollout.
type Faults struct {
	Faults []Fault `json:"faults"`
}

// Fault is one entry of a faults file: exactly one of its fields is set.
type Fault struct {
	// Degrade makes the sites fail their health checks while they run the rollout's commit,
	// from After on (0: from the moment they apply it).
	Degrade *DegradeFault `json:"degrade,omitempty"`
	// Unreachable makes the sites impossible to observe from From for For (0: to the end).
	Unreachable *UnreachableFault `json:"unreachable,omitempty"`
	// SlowReconcile makes the sites take a delay drawn from a log-normal distribution with
	// this median and 99th percentile to apply any commit.
	SlowReconcile *SlowReconcileFault `json:"slowReconcile,omitempty"`
	// Flap makes the sites alternate between healthy and failing every Period while they run
	// the rollout's commit: healthy for the first period, failing for the second, and so on.
	Flap *FlapFault `json:"flap,omitempty"`
	// RejectPushes has someone else write to a branch of each of the next Count pushes just
	// before it lands, so that the git server rejects it (a lost race).
	RejectPushes *RejectPushesFault `json:"rejectPushes,omitempty"`
	// RestartWorker kills the worker (kill -9) at At and starts a new one.
	RestartWorker *RestartWorkerFault `json:"restartWorker,omitempty"`
}

// RestartWorkerFault is Fault.RestartWorker.
type RestartWorkerFault struct {
	At time.Duration `json:"at"`
}

// DegradeFault is Fault.Degrade.
type DegradeFault struct {
	Sites []string      `json:"sites"`
	After time.Duration `json:"after,omitempty"`
}

// UnreachableFault is Fault.Unreachable.
type UnreachableFault struct {
	Sites []string      `json:"sites"`
	From  time.Duration `json:"from,omitempty"`
	For   time.Duration `json:"for,omitempty"`
}

// SlowReconcileFault is Fault.SlowReconcile.
type SlowReconcileFault struct {
	Sites []string      `json:"sites"`
	P50   time.Duration `json:"p50"`
	P99   time.Duration `json:"p99"`
}

// FlapFault is Fault.Flap.
type FlapFault struct {
	Sites  []string      `json:"sites"`
	Period time.Duration `json:"period"`
}

// RejectPushesFault is Fault.RejectPushes.
type RejectPushesFault struct {
	Count int `json:"count"`
}

// Kind names the fault's kind, as the file writes it.
func (f Fault) Kind() string {
	switch {
	case f.Degrade != nil:
		return "degrade"
	case f.Unreachable != nil:
		return "unreachable"
	case f.SlowReconcile != nil:
		return "slowReconcile"
	case f.Flap != nil:
		return "flap"
	case f.RejectPushes != nil:
		return "rejectPushes"
	case f.RestartWorker != nil:
		return "restartWorker"
	}
	return ""
}

// Matches reports whether a site pattern list (globs, as path.Match) names the site.
func Matches(patterns []string, site string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, site); ok {
			return true
		}
	}
	return false
}

type faultsDoc struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Faults     []faultFile `yaml:"faults"`
}

type faultFile struct {
	Degrade *struct {
		Sites []string `yaml:"sites"`
		After string   `yaml:"after"`
	} `yaml:"degrade"`
	Unreachable *struct {
		Sites []string `yaml:"sites"`
		From  string   `yaml:"from"`
		For   string   `yaml:"for"`
	} `yaml:"unreachable"`
	SlowReconcile *struct {
		Sites []string `yaml:"sites"`
		Delay struct {
			P50 string `yaml:"p50"`
			P99 string `yaml:"p99"`
		} `yaml:"delay"`
	} `yaml:"slowReconcile"`
	Flap *struct {
		Sites  []string `yaml:"sites"`
		Period string   `yaml:"period"`
	} `yaml:"flap"`
	RejectPushes *struct {
		Count int `yaml:"count"`
	} `yaml:"rejectPushes"`
	RestartWorker *struct {
		At string `yaml:"at"`
	} `yaml:"restartWorker"`
}

// ParseFaults parses and validates a faults file for the plan: every site pattern must name at
// least one of its sites. On failure the error is a *PlanError listing every problem with its
// line and column.
func ParseFaults(file string, data []byte, plan *Plan) (*Faults, error) {
	var doc faultsDoc
	v, err := parseDoc(file, data, KindFaults, &doc)
	if err != nil {
		return nil, err
	}
	if doc.APIVersion != APIVersion {
		v.errorf("$.apiVersion", "apiVersion must be %q, got %q", APIVersion, doc.APIVersion)
	}
	if doc.Kind != KindFaults {
		v.errorf("$.kind", "kind must be %q, got %q", KindFaults, doc.Kind)
	}
	out := &Faults{}
	for i, ff := range doc.Faults {
		p := fmt.Sprintf("$.faults[%d]", i)
		f, n := Fault{}, 0
		if d := ff.Degrade; d != nil {
			n++
			f.Degrade = &DegradeFault{Sites: v.sitePatterns(p+".degrade.sites", d.Sites, plan),
				After: v.duration(p+".degrade.after", d.After, 0, true)}
		}
		if u := ff.Unreachable; u != nil {
			n++
			f.Unreachable = &UnreachableFault{Sites: v.sitePatterns(p+".unreachable.sites", u.Sites, plan),
				From: v.duration(p+".unreachable.from", u.From, 0, true), For: v.duration(p+".unreachable.for", u.For, 0, true)}
		}
		if s := ff.SlowReconcile; s != nil {
			n++
			f.SlowReconcile = &SlowReconcileFault{Sites: v.sitePatterns(p+".slowReconcile.sites", s.Sites, plan),
				P50: v.duration(p+".slowReconcile.delay.p50", s.Delay.P50, 0, false), P99: v.duration(p+".slowReconcile.delay.p99", s.Delay.P99, 0, false)}
			switch {
			case s.Delay.P50 == "" || s.Delay.P99 == "":
				v.errorf(p+".slowReconcile.delay", "slowReconcile needs delay: {p50: 30s, p99: 4m}")
			case f.SlowReconcile.P99 < f.SlowReconcile.P50:
				v.errorf(p+".slowReconcile.delay.p99", "p99 %s is below p50 %s", f.SlowReconcile.P99, f.SlowReconcile.P50)
			}
		}
		if fl := ff.Flap; fl != nil {
			n++
			f.Flap = &FlapFault{Sites: v.sitePatterns(p+".flap.sites", fl.Sites, plan), Period: v.duration(p+".flap.period", fl.Period, 0, false)}
			if fl.Period == "" {
				v.errorf(p+".flap", "flap needs a period, like 2m")
			}
		}
		if r := ff.RejectPushes; r != nil {
			n++
			f.RejectPushes = &RejectPushesFault{Count: r.Count}
			if r.Count < 1 {
				v.errorf(p+".rejectPushes", "rejectPushes needs a count of at least 1")
			}
		}
		if rw := ff.RestartWorker; rw != nil {
			n++
			f.RestartWorker = &RestartWorkerFault{At: v.duration(p+".restartWorker.at", rw.At, 0, true)}
			if rw.At == "" {
				v.errorf(p+".restartWorker", "restartWorker needs at: when to kill the worker, like 15m")
			}
		}
		if n != 1 {
			v.errorf(p, "fault %d needs exactly one of degrade, unreachable, slowReconcile, flap, rejectPushes, restartWorker; it has %d", i+1, n)
			continue
		}
		out.Faults = append(out.Faults, f)
	}
	if err := v.err(file); err != nil {
		return nil, err
	}
	return out, nil
}

// sitePatterns checks that each pattern is a valid glob naming at least one site of the plan.
func (v *validator) sitePatterns(p string, patterns []string, plan *Plan) []string {
	if len(patterns) == 0 {
		v.errorf(p, "list the sites: names or globs like \"r2-*\"")
	}
	for i, pat := range patterns {
		if _, err := path.Match(pat, ""); err != nil {
			v.errorf(fmt.Sprintf("%s[%d]", p, i), "%q is not a valid glob: %v", pat, err)
			continue
		}
		found := false
		for _, s := range plan.Sites {
			if ok, _ := path.Match(pat, s.Name); ok {
				found = true
				break
			}
		}
		if !found {
			v.errorf(fmt.Sprintf("%s[%d]", p, i), "%q names no site of the plan", pat)
		}
	}
	return patterns
}

// MinScaledInterval is the shortest health interval a scaled plan keeps: a health round costs
// a local activity and a timer, and rounds closer than this measure nothing new.
const MinScaledInterval = 100 * time.Millisecond

// MinScaledTimeout is the shortest convergence or unknown timeout a scaled plan may have: the
// machinery of a rehearsal (git fetches, polls, workflow tasks) takes a good part of a second
// of real time, which must stay small beside what the timeouts measure.
const MinScaledTimeout = time.Second

// MaxScale is the largest time scale the plan can be rehearsed at: the one that brings its
// shorter timeout (convergence or unknown) down to MinScaledTimeout.
func (p *Plan) MaxScale() float64 {
	return float64(min(p.Health.ConvergenceTimeout, p.Health.UnknownTimeout)) / float64(MinScaledTimeout)
}

// ScaleDown divides a duration of the plan's clock by a rehearsal's time scale k (k <= 0
// leaves it as it is).
func ScaleDown(d time.Duration, k float64) time.Duration {
	if k <= 0 {
		return d
	}
	return time.Duration(float64(d) / k)
}

// Scaled returns a copy of the plan whose durations (bakes, approval timeouts, health interval
// and timeouts) are divided by k, for a rehearsal on a faster clock; the health interval stays
// at least MinScaledInterval. Policies (freezes, business hours, soaks) keep the plan's values:
// a rehearsal judges them on the plan's clock (PlanClock). k <= 1 returns the plan unchanged.
func (p *Plan) Scaled(k float64) *Plan {
	if k <= 1 {
		return p
	}
	div := func(d time.Duration) time.Duration { return ScaleDown(d, k) }
	out := *p
	out.Waves = make([]Wave, len(p.Waves))
	for i, w := range p.Waves {
		w.Bake = div(w.Bake)
		if w.Approval != nil {
			a := *w.Approval
			a.Timeout = div(a.Timeout)
			w.Approval = &a
		}
		out.Waves[i] = w
	}
	out.Health.ConvergenceTimeout = div(p.Health.ConvergenceTimeout)
	out.Health.Interval = max(div(p.Health.Interval), MinScaledInterval)
	out.Health.UnknownTimeout = div(p.Health.UnknownTimeout)
	out.Health.Offline.After = div(p.Health.Offline.After)
	out.Health.Offline.Probe = div(p.Health.Offline.Probe)
	return &out
}

// PlanClock maps a rehearsal's real time onto the plan's time: both start at Start, and Scale
// seconds of the plan pass in one real second. A rehearsal evaluates policies on it, so a freeze,
// business hours or a soak falls where it would in the plan's time.
type PlanClock struct {
	Start time.Time
	Scale float64
}

// Plan returns the plan's time at real time t (zero stays zero).
func (c PlanClock) Plan(t time.Time) time.Time {
	if t.IsZero() || c.Scale <= 0 {
		return t
	}
	return c.Start.Add(time.Duration(float64(t.Sub(c.Start)) * c.Scale))
}

// Real returns the real time at the plan's time t (zero stays zero).
func (c PlanClock) Real(t time.Time) time.Time {
	if t.IsZero() || c.Scale <= 0 {
		return t
	}
	return c.Start.Add(ScaleDown(t.Sub(c.Start), c.Scale))
}

// PlanInput returns a policy input with every time on the plan's clock.
func (c PlanClock) PlanInput(in PolicyInput) PolicyInput {
	in.Now = c.Plan(in.Now)
	in.Rollout.StartedAt = c.Plan(in.Rollout.StartedAt)
	in.PreviousWaves = slices.Clone(in.PreviousWaves)
	for i := range in.PreviousWaves {
		w := &in.PreviousWaves[i]
		w.StartedAt, w.FinishedAt = c.Plan(w.StartedAt), c.Plan(w.FinishedAt)
	}
	in.Approvals = slices.Clone(in.Approvals)
	for i := range in.Approvals {
		in.Approvals[i].At = c.Plan(in.Approvals[i].At)
	}
	return in
}

// RealDecision returns a decision made on the plan's clock with its times back on the real one,
// where the workflow's timers run.
func (c PlanClock) RealDecision(d PolicyDecision) PolicyDecision {
	d.At, d.WaitUntil = c.Real(d.At), c.Real(d.WaitUntil)
	return d
}
