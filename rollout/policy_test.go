package rollout

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func local(s, zone string) time.Time {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		panic(err)
	}
	t, err := time.ParseInLocation(localLayout, s, loc)
	if err != nil {
		panic(err)
	}
	return t
}

func TestFreezeEnd(t *testing.T) {
	oneOff := Freeze{Name: "bf", Start: local("2026-11-27T00:00:00", "America/New_York"), Timezone: "America/New_York", Duration: 96 * time.Hour}
	// Every Friday 18:00 to Monday 08:00 in Amsterdam; the EU switches to summer time on 2026-03-29.
	weekend := Freeze{Name: "weekend", Start: local("2026-03-06T18:00:00", "Europe/Amsterdam"), Timezone: "Europe/Amsterdam", Duration: 62 * time.Hour, RRule: "FREQ=WEEKLY;BYDAY=FR"}
	// Black Friday to Cyber Monday, every year: the fourth Friday of November.
	blackFriday := Freeze{Name: "bf", Start: local("2025-11-28T00:00:00", "America/New_York"), Timezone: "America/New_York", Duration: 96 * time.Hour, RRule: "FREQ=YEARLY;BYMONTH=11;BYDAY=+4FR"}
	tests := []struct {
		name string
		f    Freeze
		at   string
		want string // "" = not frozen
	}{
		{"one-off before", oneOff, "2026-11-27T04:59:59Z", ""},
		{"one-off start (EST is UTC-5)", oneOff, "2026-11-27T05:00:00Z", "2026-12-01T05:00:00Z"},
		{"one-off inside", oneOff, "2026-11-30T12:00:00Z", "2026-12-01T05:00:00Z"},
		{"one-off end is exclusive", oneOff, "2026-12-01T05:00:00Z", ""},
		{"weekly, winter time (CET, UTC+1)", weekend, "2026-03-27T17:30:00Z", "2026-03-30T07:00:00Z"},
		{"weekly, before the Friday start in summer time", weekend, "2026-04-03T15:30:00Z", ""},
		{"weekly, summer time keeps 18:00 local (CEST, UTC+2)", weekend, "2026-04-03T16:00:00Z", "2026-04-06T06:00:00Z"},
		{"weekly, Sunday", weekend, "2026-04-05T12:00:00Z", "2026-04-06T06:00:00Z"},
		{"weekly, Tuesday", weekend, "2026-04-07T12:00:00Z", ""},
		{"yearly, Black Friday 2026 is November 27", blackFriday, "2026-11-27T12:00:00Z", "2026-12-01T05:00:00Z"},
		{"yearly, the Friday before is open", blackFriday, "2026-11-20T12:00:00Z", ""},
		{"yearly, Black Friday 2027 is November 26", blackFriday, "2027-11-26T06:00:00Z", "2027-11-30T05:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			end, err := FreezeEnd(tt.f, utc(tt.at))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if !end.IsZero() {
				got = end.UTC().Format(time.RFC3339)
			}
			if got != tt.want {
				t.Errorf("FreezeEnd at %s = %q, want %q", tt.at, got, tt.want)
			}
		})
	}
}

func TestBusinessHours(t *testing.T) {
	weekdays := []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	nineToFive := &BusinessHours{Days: weekdays, Start: 9 * 60, End: 17 * 60}
	site := func(name, tz string) PolicySite { return PolicySite{Name: name, Timezone: tz} }
	tests := []struct {
		name  string
		b     *BusinessHours
		sites []PolicySite
		at    string
		want  string
		err   string
	}{
		{"New York after the DST change (EDT, UTC-4)", nineToFive, []PolicySite{site("nyc", "America/New_York")}, "2026-03-09T13:30:00Z", "2026-03-09T13:30:00Z", ""},
		{"New York before the DST change (EST, UTC-5)", nineToFive, []PolicySite{site("nyc", "America/New_York")}, "2026-03-06T13:30:00Z", "2026-03-06T14:00:00Z", ""},
		{"Friday evening waits for Monday", nineToFive, []PolicySite{site("ams", "Europe/Amsterdam")}, "2026-11-27T17:00:00Z", "2026-11-30T08:00:00Z", ""},
		{"no time zone is UTC", nineToFive, []PolicySite{site("x", "")}, "2026-11-26T08:59:00Z", "2026-11-26T09:00:00Z", ""},
		{"Amsterdam and New York overlap in the afternoon", nineToFive,
			[]PolicySite{site("ams", "Europe/Amsterdam"), site("nyc", "America/New_York")}, "2026-11-27T08:00:00Z", "2026-11-27T14:00:00Z", ""},
		{"Tokyo and Los Angeles share one hour, on the right weekdays", nineToFive,
			[]PolicySite{site("tyo", "Asia/Tokyo"), site("lax", "America/Los_Angeles")}, "2026-11-23T02:00:00Z", "2026-11-24T00:00:00Z", ""},
		{"zones that never overlap are denied", &BusinessHours{Days: weekdays, Start: 9 * 60, End: 10 * 60},
			[]PolicySite{site("tyo", "Asia/Tokyo"), site("ams", "Europe/Amsterdam")}, "2026-11-23T02:00:00Z", "", "never in business hours"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.b.NextOpen(tt.sites, utc(tt.at))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("NextOpen = %v, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got.UTC().Format(time.RFC3339) != tt.want {
				t.Errorf("NextOpen at %s = %s, %v; want %s", tt.at, got.UTC().Format(time.RFC3339), err, tt.want)
			}
		})
	}
}

func TestEvaluateBuiltins(t *testing.T) {
	now := utc("2026-11-27T12:00:00Z")
	two := 2 * time.Hour
	zero := time.Duration(0)
	plan := &Plan{Policies: Policies{
		Freezes:         []Freeze{{Name: "bf", Start: local("2026-11-27T00:00:00", "UTC"), Timezone: "UTC", Duration: 24 * time.Hour, Waves: []string{"fleet"}}},
		MaxSitesPerWave: 2,
		MinSoak:         time.Hour,
	}}
	tests := []struct {
		name         string
		wave         string
		sites        int
		prevFinished string
		soak         *time.Duration // the wave's own minSoak
		outcome      string
		until        string
		messages     string
	}{
		{"first wave, nothing applies", "canary", 1, "", nil, PolicyAllow, "", ""},
		{"soaked long enough", "eu", 2, "2026-11-27T10:00:00Z", nil, PolicyAllow, "", ""},
		{"plan minSoak", "eu", 2, "2026-11-27T11:30:00Z", nil, PolicyWait, "2026-11-27T12:30:00Z", "wave eu soaks 1h0m0s after wave canary"},
		{"wave minSoak overrides", "eu", 2, "2026-11-27T11:30:00Z", &two, PolicyWait, "2026-11-27T13:30:00Z", "soaks 2h0m0s"},
		{"wave minSoak 0 turns it off", "eu", 2, "2026-11-27T11:30:00Z", &zero, PolicyAllow, "", ""},
		{"freeze of its wave", "fleet", 1, "2026-11-27T10:00:00Z", nil, PolicyWait, "2026-11-28T00:00:00Z", "freeze bf until 2026-11-28T00:00:00Z"},
		{"too many sites denies, even frozen", "fleet", 3, "2026-11-27T10:00:00Z", nil, PolicyDeny, "", "wave fleet has 3 sites; policies.maxSitesPerWave allows 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := PolicyInput{Now: now, Wave: PolicyWave{Name: tt.wave}}
			for i := range tt.sites {
				in.Wave.Sites = append(in.Wave.Sites, PolicySite{Name: string(rune('a' + i))})
			}
			if tt.prevFinished != "" {
				in.PreviousWaves = []PolicyWaveResult{{Name: "canary", FinishedAt: utc(tt.prevFinished)}}
			}
			deny, waits := EvaluateBuiltins(plan.Policies, plan.MinSoakFor(Wave{Name: tt.wave, MinSoak: tt.soak}), in)
			d := Combine(now, deny, waits)
			if d.Outcome != tt.outcome {
				t.Fatalf("outcome %s, want %s: %+v", d.Outcome, tt.outcome, d)
			}
			if tt.until != "" && d.WaitUntil.UTC().Format(time.RFC3339) != tt.until {
				t.Errorf("until %s, want %s", d.WaitUntil, tt.until)
			}
			if msgs := strings.Join(append(d.Deny, d.Reasons...), "\n"); !strings.Contains(msgs, tt.messages) {
				t.Errorf("messages %q do not contain %q", msgs, tt.messages)
			}
		})
	}
}

func TestFreezeRecursAtMostHourly(t *testing.T) {
	f := Freeze{Name: "x", Start: utc("2026-01-01T00:00:00Z"), Timezone: "UTC", Duration: time.Hour, RRule: "FREQ=MINUTELY;INTERVAL=5"}
	if _, err := FreezeRule(f); err == nil || !strings.Contains(err.Error(), "at most hourly") {
		t.Errorf("FreezeRule = %v", err)
	}
	// Overlapping occurrences: every 6h for 8h; at 07:00 the 00:00 one ended, the 06:00 one covers.
	f = Freeze{Name: "x", Start: utc("2026-01-01T00:00:00Z"), Timezone: "UTC", Duration: 8 * time.Hour, RRule: "FREQ=HOURLY;INTERVAL=6"}
	if end, err := FreezeEnd(f, utc("2026-03-01T07:00:00Z")); err != nil || !end.Equal(utc("2026-03-01T14:00:00Z")) {
		t.Errorf("FreezeEnd = %s, %v; want 14:00", end, err)
	}
}

func TestCombineTakesTheLatestWait(t *testing.T) {
	at := utc("2026-11-27T12:00:00Z")
	d := Combine(at, nil, map[string]time.Time{"a": at.Add(time.Hour), "b": at.Add(3 * time.Hour), "past": at.Add(-time.Hour)})
	if d.Outcome != PolicyWait || !d.WaitUntil.Equal(at.Add(3*time.Hour)) || len(d.Reasons) != 2 {
		t.Errorf("Combine = %+v", d)
	}
}

func TestParsePolicies(t *testing.T) {
	doc := header + `  sites: [{name: a, timezone: Europe/Amsterdam}, {name: b, timezone: Mars/Olympus}]
  waves: [{name: canary, sites: [a], minSoak: 30m}, {name: rest}]
  policies:
    freezes:
      - {name: bf, start: "2026-11-27T00:00:00", timezone: America/New_York, duration: 96h, rrule: "FREQ=YEARLY;BYMONTH=11;BYDAY=+4FR", waves: [rest]}
      - {name: bad, start: "27/11/2026", timezone: Nowhere/City, duration: soon, rrule: "FREQ=SOMETIMES", waves: [nope]}
    businessHours: {days: [Mon, Funday], start: "17:00", end: "09:00"}
    maxSitesPerWave: 0
    minSoak: 2h
`
	_, err := ParsePlan("f.yaml", []byte(doc))
	want := []string{
		`4:70: site "b": unknown time zone "Mars/Olympus"`,
		`9:28: freeze "bad": start "27/11/2026" is not a wall-clock time`,
		`9:52: freeze "bad": unknown time zone "Nowhere/City"`,
		`9:76: invalid duration "soon"`,
		`9:89: freeze "bad": invalid rrule "FREQ=SOMETIMES"`,
		`9:115: freeze bad names unknown wave "nope"`,
		`10:33: unknown day "Funday"`,
		`10:63: businessHours end 09:00 must be after start 17:00`,
		`11:22: maxSitesPerWave must be at least 1, got 0`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), "f.yaml:"+w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	if n := len(err.(*PlanError).Issues); n != len(want) {
		t.Errorf("%d issues, want %d:\n%v", n, len(want), err)
	}

	good := strings.Replace(strings.Replace(doc, "      - {name: bad,", "      #", 1), "Mars/Olympus", "UTC", 1)
	good = strings.Replace(good, "    businessHours: {days: [Mon, Funday], start: \"17:00\", end: \"09:00\"}\n    maxSitesPerWave: 0\n", "    businessHours: {start: \"09:00\", end: \"17:00\"}\n    maxSitesPerWave: 20\n", 1)
	p, err := ParsePlan("f.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	pol := p.Policies
	if len(pol.Freezes) != 1 || pol.Freezes[0].Start.Format(time.RFC3339) != "2026-11-27T00:00:00-05:00" || pol.MaxSitesPerWave != 20 ||
		pol.MinSoak != 2*time.Hour || pol.BusinessHours == nil || len(pol.BusinessHours.Days) != 5 || pol.BusinessHours.Start != 540 {
		t.Errorf("policies = %+v", pol)
	}
	if p.Waves[0].MinSoak == nil || *p.Waves[0].MinSoak != 30*time.Minute || p.Waves[1].MinSoak != nil {
		t.Errorf("wave minSoak = %v, %v", p.Waves[0].MinSoak, p.Waves[1].MinSoak)
	}
}
