package rollout

import (
	"fmt"
	"slices"
	"time"
)

// businessHoursHorizon bounds the search for a time when every site of a wave is in business
// hours; past it, the wave is denied rather than left waiting forever.
const businessHoursHorizon = 8 * 24 * time.Hour

// EvaluateBuiltins evaluates the plan's built-in policies for the wave described by in, at
// in.Now; minSoak is the wave's effective soak (Plan.MinSoakFor). It returns denial messages
// and, per reason, the time the wave must wait until.
func EvaluateBuiltins(p Policies, minSoak time.Duration, in PolicyInput) (deny []string, waits map[string]time.Time) {
	waits = map[string]time.Time{}
	now, wave := in.Now, in.Wave
	for _, f := range p.Freezes {
		if !AppliesTo(f.Waves, wave.Name) {
			continue
		}
		end, err := FreezeEnd(f, now)
		if err != nil {
			deny = append(deny, fmt.Sprintf("freeze %s: %v", f.Name, err))
			continue
		}
		if !end.IsZero() {
			waits[fmt.Sprintf("freeze %s until %s", f.Name, end.UTC().Format(time.RFC3339))] = end
		}
	}
	if b := p.BusinessHours; b != nil && AppliesTo(b.Waves, wave.Name) {
		until, err := b.NextOpen(wave.Sites, now)
		switch {
		case err != nil:
			deny = append(deny, fmt.Sprintf("business hours: wave %s: %v", wave.Name, err))
		case until.After(now):
			waits[fmt.Sprintf("business hours at every site of wave %s from %s", wave.Name, until.UTC().Format(time.RFC3339))] = until
		}
	}
	if p.MaxSitesPerWave > 0 && len(wave.Sites) > p.MaxSitesPerWave {
		deny = append(deny, fmt.Sprintf("wave %s has %s; policies.maxSitesPerWave allows %d", wave.Name, Count(len(wave.Sites), "site"), p.MaxSitesPerWave))
	}
	if soak := minSoak; soak > 0 && len(in.PreviousWaves) > 0 {
		prev := in.PreviousWaves[len(in.PreviousWaves)-1]
		if until := prev.FinishedAt.Add(soak); !prev.FinishedAt.IsZero() && until.After(now) {
			waits[fmt.Sprintf("wave %s soaks %s after wave %s finished, until %s", wave.Name, soak, prev.Name, until.UTC().Format(time.RFC3339))] = until
		}
	}
	return deny, waits
}

// MinSoakFor is the soak wave w must wait after the previous wave finished: its own minSoak,
// else the plan's.
func (p *Plan) MinSoakFor(w Wave) time.Duration {
	if w.MinSoak != nil {
		return *w.MinSoak
	}
	return p.Policies.MinSoak
}

// FreezeEnd returns the end of the freeze occurrence that covers t, or the zero time when t is
// outside every occurrence.
func FreezeEnd(f Freeze, t time.Time) (time.Time, error) {
	if f.RRule == "" {
		if !t.Before(f.Start) && t.Before(f.Start.Add(f.Duration)) {
			return f.Start.Add(f.Duration), nil
		}
		return time.Time{}, nil
	}
	r, err := FreezeRule(f)
	if err != nil {
		return time.Time{}, err
	}
	// Occurrences may overlap (a duration longer than the period): take the latest end of
	// those that started within one duration before t.
	var end time.Time
	for _, occ := range r.Between(t.Add(-f.Duration), t, true) {
		if e := occ.Add(f.Duration); t.Before(e) && e.After(end) {
			end = e
		}
	}
	return end, nil
}

// Open reports whether t is within business hours in loc.
func (b *BusinessHours) Open(t time.Time, loc *time.Location) bool {
	local := t.In(loc)
	minute := local.Hour()*60 + local.Minute()
	return slices.Contains(b.Days, local.Weekday()) && minute >= b.Start && minute < b.End
}

// NextOpen returns the first time at or after t when it is business hours at every site, each
// in its own time zone.
func (b *BusinessHours) NextOpen(sites []PolicySite, t time.Time) (time.Time, error) {
	zones := map[string]*time.Location{}
	var locs []*time.Location
	for _, s := range sites {
		name := s.Timezone
		if name == "" {
			name = "UTC"
		}
		if _, ok := zones[name]; !ok {
			loc, err := time.LoadLocation(name)
			if err != nil {
				return time.Time{}, fmt.Errorf("site %s: %v", s.Name, err)
			}
			zones[name] = loc
			locs = append(locs, loc)
		}
	}
	// Jump from one closed zone's next opening to the next until every zone is open at once.
	step := t
	for step.Sub(t) <= businessHoursHorizon {
		closed := slices.IndexFunc(locs, func(loc *time.Location) bool { return !b.Open(step, loc) })
		if closed < 0 {
			return step, nil
		}
		step = b.nextOpenIn(step, locs[closed])
	}
	return time.Time{}, fmt.Errorf("its sites are never in business hours at the same time within %s", businessHoursHorizon)
}

// nextOpenIn returns the first whole minute after t when it is business hours in loc, or a
// time past the horizon.
func (b *BusinessHours) nextOpenIn(t time.Time, loc *time.Location) time.Time {
	step := t.Truncate(time.Minute).Add(time.Minute)
	for limit := t.Add(businessHoursHorizon + time.Minute); step.Before(limit); step = step.Add(time.Minute) {
		if b.Open(step, loc) {
			return step
		}
	}
	return t.Add(2 * businessHoursHorizon)
}
