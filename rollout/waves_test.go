package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fleetPlan writes a plan of n sites named s-000..., in regions r0..r(regions-1) (site i in
// region i%regions, so the regions are as even as n allows), with the given waves.
func fleetPlan(n, regions int, waves string) string {
	var b strings.Builder
	b.WriteString("apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: shops}\nspec:\n  sites:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - {name: s-%04d, labels: {region: r%d}}\n", i, i%regions)
	}
	b.WriteString("  waves:\n" + waves)
	return b.String()
}

func waveSites(t *testing.T, doc string) map[string][]string {
	t.Helper()
	p, err := ParsePlan("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, w := range p.Waves {
		out[w.Name] = w.Sites
	}
	return out
}

// siteNumber is i of a site named s-000i by fleetPlan.
func siteNumber(t *testing.T, site string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(site, "s-%d", &i); err != nil {
		t.Fatalf("site %q: %v", site, err)
	}
	return i
}

func TestPercentOf(t *testing.T) {
	for _, tt := range []struct {
		percent float64
		fleet   int
		want    int
	}{
		{1, 300, 3}, {1, 301, 4}, {10, 30, 3}, {10, 31, 4}, {0.5, 10, 1}, {1, 1, 1},
		{100, 7, 7}, {33.33, 300, 100}, {0.01, 10000, 1}, {0.01, 10001, 2}, {12.5, 8, 1},
	} {
		if got := PercentOf(tt.percent, tt.fleet); got != tt.want {
			t.Errorf("PercentOf(%g, %d) = %d, want %d", tt.percent, tt.fleet, got, tt.want)
		}
	}
}

func TestPercentWaves(t *testing.T) {
	waves := "    - {name: canary, percent: 1, spread: region}\n" +
		"    - {name: early, percent: 10, spread: region}\n" +
		"    - {name: rest}\n"
	got := waveSites(t, fleetPlan(300, 3, waves))
	if len(got["canary"]) != 3 || len(got["early"]) != 30 || len(got["rest"]) != 267 {
		t.Fatalf("wave sizes %d/%d/%d, want 3/30/267", len(got["canary"]), len(got["early"]), len(got["rest"]))
	}
	// Spread: one canary per region, and ten of each region in early.
	for _, wave := range []string{"canary", "early"} {
		per := map[string]int{}
		for _, s := range got[wave] {
			per[fmt.Sprintf("r%d", siteNumber(t, s)%3)]++
		}
		want := len(got[wave]) / 3
		for _, r := range []string{"r0", "r1", "r2"} {
			if per[r] != want {
				t.Errorf("wave %s: %d sites of region %s, want %d (%v)", wave, per[r], r, want, per)
			}
		}
	}
	// Stable: the same plan gives the same sites, and the sites are in plan order.
	if again := waveSites(t, fleetPlan(300, 3, waves)); !slices.Equal(again["canary"], got["canary"]) || !slices.Equal(again["early"], got["early"]) {
		t.Error("the same plan chose other sites")
	}
	if !slices.IsSorted(got["early"]) {
		t.Errorf("early's sites are not in plan order: %v", got["early"])
	}
	// The hash, not the order of the file, chooses: the canary is not simply the first sites.
	if slices.Equal(got["canary"], []string{"s-0000", "s-0001", "s-0002"}) {
		t.Error("percent took the first sites of the file")
	}
}

func TestPercentWaveSpreadProportions(t *testing.T) {
	// 100 sites: 70 in big, 20 in mid, 10 in small. 10% spread: 7, 2, 1 in proportion; 2%
	// (2 sites for 3 values): the two largest groups give one each.
	var b strings.Builder
	b.WriteString("apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nspec:\n  sites:\n")
	for i := range 100 {
		region := "big"
		switch {
		case i >= 90:
			region = "small"
		case i >= 70:
			region = "mid"
		}
		fmt.Fprintf(&b, "    - {name: s-%03d, labels: {region: %s}}\n", i, region)
	}
	for _, tt := range []struct {
		percent string
		want    map[string]int
	}{
		{"10", map[string]int{"big": 7, "mid": 2, "small": 1}},
		{"3", map[string]int{"big": 1, "mid": 1, "small": 1}},
		{"2", map[string]int{"big": 1, "mid": 1}},
		{"50", map[string]int{"big": 35, "mid": 10, "small": 5}},
	} {
		doc := b.String() + "  waves:\n    - {name: first, percent: " + tt.percent + ", spread: region}\n    - {name: rest}\n"
		p, err := ParsePlan("f.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		site := SitesByName(p.Sites)
		per := map[string]int{}
		for _, s := range p.Waves[0].Sites {
			per[site(s).Labels["region"]]++
		}
		if fmt.Sprint(per) != fmt.Sprint(tt.want) {
			t.Errorf("percent %s: per region %v, want %v", tt.percent, per, tt.want)
		}
	}
}

// Adding a site moves as few others as possible: without spread at most one site leaves the
// wave; with spread at most a few (a group's share can move by one).
func TestPercentWaveStableWhenASiteIsAdded(t *testing.T) {
	for _, spread := range []string{"", ", spread: region"} {
		waves := "    - {name: early, percent: 10" + spread + "}\n    - {name: rest}\n"
		before := waveSites(t, fleetPlan(500, 4, waves))["early"]
		worst := 0
		for n := 501; n <= 540; n++ {
			after := waveSites(t, fleetPlan(n, 4, waves))["early"]
			left := 0
			for _, s := range before {
				if !slices.Contains(after, s) {
					left++
				}
			}
			worst = max(worst, left)
			limit := 1
			if spread != "" {
				limit = 3
			}
			if left > limit {
				t.Errorf("spread %q: going from %d to %d sites moved %d sites out of the wave", spread, n-1, n, left)
			}
			before = after
		}
		t.Logf("spread %q: at most %d sites left the wave per added site", spread, worst)
	}
}

func TestPercentWaveWithSelector(t *testing.T) {
	waves := "    - {name: canary, percent: 1, selector: {region: r1}}\n    - {name: rest}\n"
	got := waveSites(t, fleetPlan(300, 3, waves))
	if len(got["canary"]) != 3 {
		t.Fatalf("canary has %d sites, want 3 (1%% of the fleet)", len(got["canary"]))
	}
	for _, s := range got["canary"] {
		if siteNumber(t, s)%3 != 1 {
			t.Errorf("canary took %s, which the selector does not match", s)
		}
	}
}

func TestPercentWaveErrors(t *testing.T) {
	sites := "  sites: [{name: a, labels: {region: x}}, {name: b}]\n  waves:\n"
	for _, tt := range []struct{ waves, want string }{
		{"    - {name: w, percent: 0}\n    - {name: r}\n", `6:26: wave "w": percent must be above 0 and at most 100, got 0`},
		{"    - {name: w, percent: 101}\n    - {name: r}\n", "percent must be above 0 and at most 100, got 101"},
		{"    - {name: w, percent: 1.234}\n    - {name: r}\n", `wave "w": percent 1.234 has more than two decimals`},
		{"    - {name: w, percent: 10, sites: [a]}\n    - {name: r}\n", `wave "w" has both percent and sites`},
		{"    - {name: w, spread: region}\n", `6:25: wave "w": spread needs percent`},
		{"    - {name: w, percent: 50, spread: zone}\n    - {name: r}\n", `wave "w": spread "zone": no site left for this wave has that label`},
		{"    - {name: w, sites: [a, b]}\n    - {name: late, percent: 10}\n", `wave "late" takes 10% of the sites, but every site is already in an earlier wave`},
	} {
		_, err := ParsePlan("f.yaml", []byte(header+sites+tt.waves))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("waves\n%s: error %v, want %q", tt.waves, err, tt.want)
		}
	}
}

func TestSeveralKustomizations(t *testing.T) {
	ok := header + "  sites:\n    - {name: a, cluster: {context: prod, kustomizations: [flux-system/infra, flux-system/apps]}}\n  waves: [{name: w}]\n"
	p, err := ParsePlan("f.yaml", []byte(ok))
	if err != nil || fmt.Sprint(p.Sites[0].Cluster.Kustomizations) != "[flux-system/infra flux-system/apps]" {
		t.Fatalf("%+v, %v", p, err)
	}
	for _, tt := range []struct{ cluster, want string }{
		{"{kustomization: a/b, kustomizations: [a/c]}", `site "a": set kustomization or kustomizations, not both`},
		{"{kustomizations: []}", `site "a": kustomizations lists none`},
		{"{kustomizations: [a/b, apps]}", `f.yaml:5:49: kustomization must be namespace/name, got "apps"`},
		{"{kustomizations: [a/b, a/b]}", `site "a" lists kustomization a/b twice`},
	} {
		doc := header + "  sites:\n    - {name: a, cluster: " + tt.cluster + "}\n  waves: [{name: w}]\n"
		if _, err := ParsePlan("f.yaml", []byte(doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("cluster %s: %v, want %q", tt.cluster, err, tt.want)
		}
	}
}
