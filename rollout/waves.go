package rollout

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// waves resolves wave membership. Explicit lists claim their sites first. Then, in wave order, a
// selector takes the matching sites not claimed yet, and a percent wave takes its share of
// them (pickPercent). A wave with none of these takes every site no other wave claims. Every
// site must end up in exactly one wave. fleet (metadata.name) seeds the percent waves' hash.
func (v *validator) waves(in []fileWave, sites []Site, fleet string) []Wave {
	if len(in) == 0 {
		v.errorf("$.spec.waves", "the plan has no waves")
		return nil
	}
	if len(in) > MaxWaves {
		v.errorf(fmt.Sprintf("$.spec.waves[%d]", MaxWaves), "the plan has %d waves; a plan may have at most %d", len(in), MaxWaves)
	}
	known := map[string]bool{}
	for _, s := range sites {
		known[s.Name] = true
	}
	owner := map[string]string{} // site -> wave that claimed it
	names := map[string]bool{}
	out := make([]Wave, len(in))
	rest := -1

	// Explicit lists first: they state intent, so a clash with them is reported, never resolved.
	for i, fw := range in {
		path := fmt.Sprintf("$.spec.waves[%d]", i)
		w := Wave{Name: fw.Name, Selector: fw.Selector, Explicit: fw.Sites}
		switch {
		case fw.Name == "":
			v.errorf(path, "wave %d has no name", i+1)
		case !nameRE.MatchString(fw.Name):
			v.errorf(path+".name", "invalid wave name %q: use lowercase letters, digits, '.', '_' and '-'", fw.Name)
		case names[fw.Name]:
			v.errorf(path+".name", "duplicate wave name %q", fw.Name)
		}
		names[fw.Name] = true
		if fw.Selector != nil && fw.Sites != nil {
			v.errorf(path+".selector", "wave %q has both selector and sites; use one", fw.Name)
		}
		w.Percent, w.Spread = v.percent(path, fw), fw.Spread
		if fw.Selector != nil && len(fw.Selector) == 0 {
			v.errorf(path+".selector", "wave %q has an empty selector; leave selector out to take the remaining sites", fw.Name)
		}
		if fw.Sites != nil && len(fw.Sites) == 0 {
			v.errorf(path+".sites", "wave %q lists no sites", fw.Name)
		}
		for j, name := range fw.Sites {
			sp := fmt.Sprintf("%s.sites[%d]", path, j)
			switch {
			case !known[name]:
				v.errorf(sp, "wave %q names unknown site %q", fw.Name, name)
			case owner[name] != "":
				v.errorf(sp, "site %q is in two waves: %q and %q", name, owner[name], fw.Name)
			default:
				owner[name] = fw.Name
			}
		}
		if fw.MaxParallel != nil {
			if *fw.MaxParallel < 1 {
				v.errorf(path+".maxParallel", "maxParallel must be at least 1, got %d", *fw.MaxParallel)
			} else {
				w.MaxParallel = *fw.MaxParallel
			}
		}
		if fw.MaxFailures != nil {
			w.MaxFailures = v.failureBudget(path+".maxFailures", fw.MaxFailures)
		}
		w.Bake = v.duration(path+".bake", fw.Bake, 0, true)
		if fw.MinSoak != "" {
			soak := v.duration(path+".minSoak", fw.MinSoak, 0, true)
			w.MinSoak = &soak
		}
		if fw.Approval != nil {
			w.Approval = v.approval(path+".approval", fw.Name, *fw.Approval)
		}
		if w.Rest() {
			if rest >= 0 {
				v.errorf(path, "waves %q and %q both take the remaining sites; give one a selector or a site list", in[rest].Name, fw.Name)
			}
			rest = i
		}
		out[i] = w
	}
	// Then selectors and percentages, in wave order, over what is left.
	for i := range out {
		w := &out[i]
		if len(w.Selector) == 0 && w.Percent == 0 {
			continue
		}
		var free []Site
		for _, s := range sites {
			if owner[s.Name] == "" && matches(w.Selector, s.Labels) {
				free = append(free, s)
			}
		}
		if w.Percent > 0 {
			if w.Spread != "" && len(free) > 0 && !slices.ContainsFunc(free, func(s Site) bool { _, ok := s.Labels[w.Spread]; return ok }) {
				v.errorf(fmt.Sprintf("$.spec.waves[%d].spread", i), "wave %q: spread %q: no site left for this wave has that label", w.Name, w.Spread)
			}
			free = pickPercent(fleet, free, PercentOf(w.Percent, len(sites)), w.Spread)
		}
		for _, s := range free {
			owner[s.Name] = w.Name
		}
	}
	// Then the rest.
	if rest >= 0 {
		for _, s := range sites {
			if owner[s.Name] == "" {
				owner[s.Name] = out[rest].Name
			}
		}
	}
	for i := range out {
		w := &out[i]
		for _, s := range sites {
			if owner[s.Name] == w.Name && w.Name != "" {
				w.Sites = append(w.Sites, s.Name)
			}
		}
		path := fmt.Sprintf("$.spec.waves[%d]", i)
		if len(w.Sites) == 0 && !v.sitesIncomplete {
			switch {
			case w.Percent > 0 && len(w.Selector) == 0:
				v.errorf(path+".percent", "wave %q takes %g%% of the sites, but every site is already in an earlier wave", w.Name, w.Percent)
			case len(w.Selector) > 0 && slices.ContainsFunc(sites, func(s Site) bool { return matches(w.Selector, s.Labels) }):
				v.errorf(path+".selector", "wave %q: selector %s matches only sites already in earlier waves", w.Name, FormatSelector(w.Selector))
			case len(w.Selector) > 0:
				v.errorf(path+".selector", "wave %q: selector %s matches no site", w.Name, FormatSelector(w.Selector))
			case w.Rest() && i == rest:
				v.errorf(path, "wave %q takes the remaining sites, but every site is already in another wave", w.Name)
			}
		}
	}
	for i, s := range sites {
		if owner[s.Name] == "" {
			v.errorf(fmt.Sprintf("$.spec.sites[%d].name", i), "site %q is in no wave; add it to a wave, or add a last wave without selector to take the remaining sites", s.Name)
		}
	}
	return out
}

// percent reads a wave's percent and checks what goes with it: a share of the fleet above 0 and
// at most 100, with at most two decimals, not with an explicit site list; spread only with it.
func (v *validator) percent(path string, fw fileWave) float64 {
	if fw.Percent == nil {
		if fw.Spread != "" {
			v.errorf(path+".spread", "wave %q: spread needs percent: it says how the wave's share of the fleet is drawn", fw.Name)
		}
		return 0
	}
	switch p := *fw.Percent; {
	case !(p > 0 && p <= 100):
		v.errorf(path+".percent", "wave %q: percent must be above 0 and at most 100, got %g", fw.Name, p)
	case math.Abs(p*100-math.Round(p*100)) > 1e-6:
		v.errorf(path+".percent", "wave %q: percent %g has more than two decimals", fw.Name, p)
	case fw.Sites != nil:
		v.errorf(path+".percent", "wave %q has both percent and sites; percent combines with a selector, not with a list", fw.Name)
	default:
		return p
	}
	return -1 // not a rest wave either: the plan is refused for the error above
}

// PercentOf returns how many of a fleet's sites a percent wave takes: percent of them, rounded
// up, at least 1. It counts in hundredths of a percent, so 10% of 30 is 3, not 4.
func PercentOf(percent float64, fleet int) int {
	hundredths := int64(math.Round(percent * 100))
	return max(1, int((int64(fleet)*hundredths+9999)/10000))
}

// pickPercent chooses n of the candidates, returned in their order. The choice is stable: each
// site ranks by a hash of the fleet and its name, and the lowest ranks are taken, so the same
// plan always takes the same sites, and adding a site moves at most one other out (with
// spread, a group's share may also shift by one).
//
// With spread, the candidates are grouped by that label's value (sites without it form one
// group), and each group gives its lowest-ranked sites:
//   - when n is at least the number of groups, every group gives one, and the rest of n is
//     shared in proportion to what each group has left (largest remainder);
//   - otherwise the n largest groups give one each (ties go to the lower-ranked site).
func pickPercent(fleet string, candidates []Site, n int, spread string) []Site {
	if n >= len(candidates) {
		return candidates
	}
	rank := make(map[string]uint64, len(candidates))
	for _, s := range candidates {
		sum := sha256.Sum256([]byte(fleet + "\x00" + s.Name))
		rank[s.Name] = binary.BigEndian.Uint64(sum[:8])
	}
	byRank := func(a, b Site) int {
		return cmp.Or(cmp.Compare(rank[a.Name], rank[b.Name]), cmp.Compare(a.Name, b.Name))
	}
	chosen := map[string]bool{}
	if spread == "" {
		ranked := slices.Clone(candidates)
		slices.SortFunc(ranked, byRank)
		for _, s := range ranked[:n] {
			chosen[s.Name] = true
		}
	} else {
		for _, s := range spreadPick(candidates, n, spread, byRank) {
			chosen[s.Name] = true
		}
	}
	out := make([]Site, 0, n)
	for _, s := range candidates {
		if chosen[s.Name] {
			out = append(out, s)
		}
	}
	return out
}

// spreadPick is pickPercent's rule for a spread label.
func spreadPick(candidates []Site, n int, label string, byRank func(a, b Site) int) []Site {
	type group struct {
		value string
		sites []Site // by rank
		take  int
	}
	index := map[string]int{}
	var groups []*group
	for _, s := range candidates {
		value := s.Labels[label]
		i, ok := index[value]
		if !ok {
			i = len(groups)
			index[value] = i
			groups = append(groups, &group{value: value})
		}
		groups[i].sites = append(groups[i].sites, s)
	}
	for _, g := range groups {
		slices.SortFunc(g.sites, byRank)
	}
	if n < len(groups) {
		slices.SortFunc(groups, func(a, b *group) int {
			return cmp.Or(cmp.Compare(len(b.sites), len(a.sites)), byRank(a.sites[0], b.sites[0]))
		})
		for _, g := range groups[:n] {
			g.take = 1
		}
	} else {
		// Each group's share of n in proportion to its size (largest remainder), and at
		// least one.
		total, given := len(candidates), 0
		for _, g := range groups {
			g.take = max(1, n*len(g.sites)/total)
			given += g.take
		}
		// owed is how far a group's take is below its exact share, in units of 1/total.
		owed := func(g *group) int { return n*len(g.sites) - g.take*total }
		for given != n {
			slices.SortFunc(groups, func(a, b *group) int {
				return cmp.Or(cmp.Compare(owed(b), owed(a)), cmp.Compare(len(b.sites), len(a.sites)), cmp.Compare(a.value, b.value))
			})
			if given < n {
				for _, g := range groups {
					if given < n && g.take < len(g.sites) {
						g.take++
						given++
					}
				}
				continue
			}
			// The groups given one although their share was less took too many: the groups
			// most above their share give one back.
			for i := len(groups) - 1; i >= 0 && given > n; i-- {
				if g := groups[i]; g.take > 1 {
					g.take--
					given--
				}
			}
		}
	}
	var out []Site
	for _, g := range groups {
		out = append(out, g.sites[:g.take]...)
	}
	return out
}

// matches reports whether labels carry every key and value of the selector.
func matches(selector, labels map[string]string) bool {
	for k, want := range selector {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// FormatSelector writes a selector as the plan's messages do: {k1=v1, k2=v2}, keys sorted.
func FormatSelector(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + sel[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// failureBudget reads maxFailures: a count of sites (0 or more) or a percentage of the wave's
// sites ("5%", up to 100%).
func (v *validator) failureBudget(path string, raw any) FailureBudget {
	return v.budget(path, "maxFailures", raw)
}

// budget parses a count of a wave's sites (2) or a percentage of them ("5%"): maxFailures,
// maxDeferred.
func (v *validator) budget(path, field string, raw any) FailureBudget {
	bad := func() FailureBudget {
		v.errorf(path, "%s must be a number of sites (2) or a percentage of the wave (\"5%%\"), got %v", field, raw)
		return FailureBudget{}
	}
	switch n := raw.(type) {
	case uint64:
		if n > math.MaxInt32 {
			return bad()
		}
		return FailureBudget{Count: int(n)}
	case int64:
		if n < 0 || n > math.MaxInt32 {
			return bad()
		}
		return FailureBudget{Count: int(n)}
	case string:
		digits, ok := strings.CutSuffix(strings.TrimSpace(n), "%")
		p, err := strconv.Atoi(digits)
		if !ok || err != nil || p < 0 || p > 100 {
			return bad()
		}
		return FailureBudget{Percent: p}
	}
	return bad()
}
