package sim

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"

	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
)

// Script is a rehearsal's timeline of faults on the fleet (`fleetwave rehearse --faults`).
// Its times are on the plan's scale from Start, and divided by Scale on the fleet's clock.
type Script struct {
	Faults []rollout.Fault
	// Commit is the rollout's source commit: a site runs it when its applied commit is a
	// promotion of it (its Fleetwave-Source trailer).
	Commit string
	// Start is when the rollout started, on the fleet's clock.
	Start time.Time
	// Scale divides every time of the faults (1 when 0).
	Scale float64
}

// commitReader reads commit messages; gitops.Repo is one.
type commitReader interface {
	Commit(sha string) (gitops.CommitInfo, error)
}

// WithScript runs the fleet with the rehearsal's faults. Its Source must read commits
// (gitops.Repo does).
func WithScript(s Script) Option {
	return func(f *Fleet) { f.script = &s }
}

// StartScript sets the script's time zero: when its rollout started.
func (f *Fleet) StartScript(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.script != nil {
		f.script.Start = t
	}
}

// at converts a time of the script (on the plan's scale, from Start) to the fleet's clock.
func (s *Script) at(d time.Duration) time.Time { return s.Start.Add(s.scaled(d)) }

func (s *Script) scaled(d time.Duration) time.Duration { return rollout.ScaleDown(d, s.Scale) }

// runsCommit reports whether the applied commit is a promotion of the script's commit.
func (f *Fleet) runsCommit(applied string) bool {
	if v, ok := f.promotions[applied]; ok {
		return v
	}
	cr, ok := f.src.(commitReader)
	if !ok {
		return false
	}
	info, err := cr.Commit(applied)
	if err != nil {
		return false // not cached: asked again next time
	}
	v := info.Trailers[gitops.TrailerSource] == f.script.Commit
	f.promotions[applied] = v
	return v
}

// scriptUnreachable returns why the script makes the site unreachable now, or "".
func (f *Fleet) scriptUnreachable(name string, now time.Time) string {
	i, u := f.unreachableFault(name, now)
	if u == nil {
		return ""
	}
	f.record(i, name, now)
	if u.For > 0 {
		return fmt.Sprintf("rehearsal fault: unreachable from %s for %s", u.From, u.For)
	}
	return fmt.Sprintf("rehearsal fault: unreachable from %s on", u.From)
}

// scriptOffline reports whether the script makes the site unreachable now: an offline site
// neither answers nor fetches its branch.
func (f *Fleet) scriptOffline(name string, now time.Time) bool {
	_, u := f.unreachableFault(name, now)
	return u != nil
}

// unreachableFault returns the script's fault that makes the site unreachable now, and its
// index, or nil.
func (f *Fleet) unreachableFault(name string, now time.Time) (int, *rollout.UnreachableFault) {
	if f.script == nil {
		return 0, nil
	}
	for i, fl := range f.script.Faults {
		u := fl.Unreachable
		if u == nil || !rollout.Matches(u.Sites, name) {
			continue
		}
		from := f.script.at(u.From)
		if !now.Before(from) && (u.For == 0 || now.Before(f.script.at(u.From+u.For))) {
			return i, u
		}
	}
	return 0, nil
}

// scriptFailing returns why the script makes the site's checks fail now, or "".
func (f *Fleet) scriptFailing(name string, s *site, now time.Time) string {
	if f.script == nil || s.applied == "" || !f.runsCommit(s.applied) {
		return ""
	}
	for i, fl := range f.script.Faults {
		switch {
		case fl.Degrade != nil && rollout.Matches(fl.Degrade.Sites, name) && !now.Before(f.script.at(fl.Degrade.After)):
			f.record(i, name, now)
			if fl.Degrade.After > 0 {
				return fmt.Sprintf("rehearsal fault: degraded on the rollout's commit from %s on", fl.Degrade.After)
			}
			return "rehearsal fault: degraded on the rollout's commit"
		case fl.Flap != nil && rollout.Matches(fl.Flap.Sites, name):
			period := f.script.scaled(fl.Flap.Period)
			if period > 0 && (now.Sub(s.appliedAt)/period)%2 == 1 {
				f.record(i, name, now)
				return fmt.Sprintf("rehearsal fault: flapping every %s", fl.Flap.Period)
			}
		}
	}
	return ""
}

// reconcileDelay is how long the site takes to apply head under the script: the slowReconcile
// fault's draw for this site and commit (the same every time), or def.
func (f *Fleet) reconcileDelay(name, head string, def time.Duration, now time.Time) time.Duration {
	if f.script == nil {
		return def
	}
	for i, fl := range f.script.Faults {
		sr := fl.SlowReconcile
		if sr == nil || !rollout.Matches(sr.Sites, name) {
			continue
		}
		f.record(i, name, now)
		return f.script.scaled(LogNormal(sr.P50, sr.P99, name+"@"+head))
	}
	return def
}

// LogNormal draws a duration from the log-normal distribution with median p50 and 99th
// percentile p99, deterministically from key (the same key, the same draw).
func LogNormal(p50, p99 time.Duration, key string) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(key))
	u := (float64(h.Sum64()>>11) + 0.5) / (1 << 53) // uniform in (0, 1)
	z := math.Sqrt2 * math.Erfinv(2*u-1)
	if p50 <= 0 || p99 <= p50 {
		return p50
	}
	sigma := math.Log(float64(p99)/float64(p50)) / 2.3263478740408408 // z of the 99th percentile
	return time.Duration(float64(p50) * math.Exp(sigma*z))
}

// FaultEffect is when a fault first and last acted on a site, on the fleet's clock.
type FaultEffect struct {
	Fault       int // index in Script.Faults
	Site        string
	First, Last time.Time
}

// record notes that fault i acted on the site now.
func (f *Fleet) record(i int, site string, now time.Time) {
	key := effectKey{i, site}
	if e, ok := f.effects[key]; ok {
		e.Last = now
		return
	}
	f.effects[key] = &FaultEffect{Fault: i, Site: site, First: now, Last: now}
}

type effectKey struct {
	fault int
	site  string
}

// Effects returns what the script's faults did so far, by fault then site.
func (f *Fleet) Effects() []FaultEffect {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FaultEffect, 0, len(f.effects))
	for _, e := range f.effects {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b FaultEffect) int { return cmp.Or(cmp.Compare(a.Fault, b.Fault), cmp.Compare(a.Site, b.Site)) })
	return out
}

// CheckScript reports whether the fleet can run its script: its source must read commits.
func (f *Fleet) CheckScript() error {
	if f.script == nil {
		return nil
	}
	if _, ok := f.src.(commitReader); !ok {
		return errors.New("the simulated fleet's source cannot read commits, which a rehearsal script needs")
	}
	return nil
}
