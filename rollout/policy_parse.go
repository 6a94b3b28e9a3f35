package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/teambition/rrule-go"
)

// localLayout is how a freeze's start is written: wall-clock time, its zone given apart.
const localLayout = "2006-01-02T15:04:05"

var weekdays = map[string]time.Weekday{
	"mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday,
	"fri": time.Friday, "sat": time.Saturday, "sun": time.Sunday,
}

func (v *validator) policies(in filePolicies, waves []Wave) Policies {
	const base = "$.spec.policies"
	var out Policies
	names := map[string]bool{}
	for i, ff := range in.Freezes {
		path := fmt.Sprintf("%s.freezes[%d]", base, i)
		f := Freeze{Name: ff.Name, RRule: strings.TrimSpace(ff.RRule), Waves: ff.Waves, Timezone: ff.Timezone}
		switch {
		case ff.Name == "":
			v.errorf(path, "freeze %d has no name", i+1)
		case names[ff.Name]:
			v.errorf(path+".name", "duplicate freeze name %q", ff.Name)
		}
		names[ff.Name] = true
		if f.Timezone == "" {
			f.Timezone = "UTC"
		}
		loc, err := time.LoadLocation(f.Timezone)
		if err != nil {
			v.errorf(path+".timezone", "freeze %q: unknown time zone %q", ff.Name, ff.Timezone)
			loc = time.UTC
		}
		if ff.Start == "" {
			v.errorf(path, "freeze %q has no start (wall-clock time like 2026-11-27T00:00:00, in its timezone)", ff.Name)
		} else if f.Start, err = time.ParseInLocation(localLayout, ff.Start, loc); err != nil {
			v.errorf(path+".start", "freeze %q: start %q is not a wall-clock time like 2026-11-27T00:00:00 (the zone goes in timezone)", ff.Name, ff.Start)
		}
		if ff.Duration == "" {
			v.errorf(path, "freeze %q has no duration", ff.Name)
		} else {
			f.Duration = v.duration(path+".duration", ff.Duration, 0, false)
		}
		if f.RRule != "" {
			check := f
			if loc == time.UTC {
				check.Timezone = "UTC" // an unknown zone is reported above
			}
			if _, err := FreezeRule(check); err != nil {
				v.errorf(path+".rrule", "freeze %q: %v", ff.Name, err)
			}
		}
		v.waveNames(path+".waves", "freeze "+ff.Name, ff.Waves, waves)
		out.Freezes = append(out.Freezes, f)
	}
	if bh := in.BusinessHours; bh != nil {
		path := base + ".businessHours"
		b := &BusinessHours{Waves: bh.Waves}
		if len(bh.Days) == 0 {
			b.Days = []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
		}
		for j, d := range bh.Days {
			wd, ok := weekdays[strings.ToLower(d)]
			if !ok {
				v.errorf(fmt.Sprintf("%s.days[%d]", path, j), "unknown day %q: use Mon, Tue, Wed, Thu, Fri, Sat or Sun", d)
				continue
			}
			b.Days = append(b.Days, wd)
		}
		b.Start = v.clock(path+".start", bh.Start)
		b.End = v.clock(path+".end", bh.End)
		if b.Start >= 0 && b.End >= 0 && b.End <= b.Start {
			v.errorf(path+".end", "businessHours end %s must be after start %s", bh.End, bh.Start)
		}
		v.waveNames(path+".waves", "businessHours", bh.Waves, waves)
		out.BusinessHours = b
	}
	if in.MaxSitesPerWave != nil {
		if *in.MaxSitesPerWave < 1 {
			v.errorf(base+".maxSitesPerWave", "maxSitesPerWave must be at least 1, got %d", *in.MaxSitesPerWave)
		} else {
			out.MaxSitesPerWave = *in.MaxSitesPerWave
		}
	}
	out.MinSoak = v.duration(base+".minSoak", in.MinSoak, 0, true)
	return out
}

// clock parses "HH:MM" into minutes after midnight, or reports it and returns -1.
func (v *validator) clock(path, s string) int {
	t, err := time.Parse("15:04", s)
	if err != nil {
		v.errorf(path, "invalid time of day %q: use HH:MM, like 09:00", s)
		return -1
	}
	return t.Hour()*60 + t.Minute()
}

func (v *validator) waveNames(path, what string, names []string, waves []Wave) {
	for j, name := range names {
		found := false
		for _, w := range waves {
			found = found || w.Name == name
		}
		if !found {
			v.errorf(fmt.Sprintf("%s[%d]", path, j), "%s names unknown wave %q", what, name)
		}
	}
}

// FreezeRule builds the recurrence of a freeze with an RRULE, starting at its start in its
// time zone, so occurrences keep their wall-clock time across DST changes.
func FreezeRule(f Freeze) (*rrule.RRule, error) {
	loc, err := time.LoadLocation(f.Timezone)
	if err != nil {
		return nil, err
	}
	opt, err := rrule.StrToROptionInLocation(strings.TrimPrefix(f.RRule, "RRULE:"), loc)
	if err != nil {
		return nil, fmt.Errorf("invalid rrule %q: %v", f.RRule, err)
	}
	if !opt.Dtstart.IsZero() {
		return nil, fmt.Errorf("rrule %q: put the first occurrence in start, not DTSTART", f.RRule)
	}
	if opt.Freq == rrule.MINUTELY || opt.Freq == rrule.SECONDLY {
		return nil, fmt.Errorf("rrule %q: freezes recur at most hourly", f.RRule)
	}
	opt.Dtstart = f.Start.In(loc)
	r, err := rrule.NewRRule(*opt)
	if err != nil {
		return nil, fmt.Errorf("invalid rrule %q: %v", f.RRule, err)
	}
	return r, nil
}
