package rollout

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// waves resolves wave membership. Sites are claimed in wave order: an explicit list names its
// sites, a selector takes the matching sites not claimed by an earlier wave, and a wave with
// neither takes every site no other wave claims. Every site must end up in exactly one wave.
func (v *validator) waves(in []fileWave, sites []Site) []Wave {
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
	// Then selectors, in wave order, over what is left.
	for i := range out {
		w := &out[i]
		if len(w.Selector) == 0 {
			continue
		}
		for _, s := range sites {
			if owner[s.Name] == "" && matches(w.Selector, s.Labels) {
				owner[s.Name] = w.Name
			}
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
		if len(w.Sites) == 0 {
			switch {
			case len(w.Selector) > 0 && slices.ContainsFunc(sites, func(s Site) bool { return matches(w.Selector, s.Labels) }):
				v.errorf(path+".selector", "wave %q: selector %s matches only sites already in earlier waves", w.Name, formatSelector(w.Selector))
			case len(w.Selector) > 0:
				v.errorf(path+".selector", "wave %q: selector %s matches no site", w.Name, formatSelector(w.Selector))
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

// matches reports whether labels carry every key and value of the selector.
func matches(selector, labels map[string]string) bool {
	for k, want := range selector {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

func formatSelector(sel map[string]string) string {
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
	bad := func() FailureBudget {
		v.errorf(path, "maxFailures must be a number of sites (2) or a percentage of the wave (\"5%%\"), got %v", raw)
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
