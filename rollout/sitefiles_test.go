package rollout

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

const filesPlan = header + `  siteFiles: "sites/*.yaml"
  sites:
    - {name: hq, labels: {tier: canary}}
  waves:
    - {name: canary, selector: {tier: canary}}
    - {name: rest}
`

func TestSiteFiles(t *testing.T) {
	files := fstest.MapFS{
		"sites/ams-1.yaml": {Data: []byte("apiVersion: fleetwave.dev/v1alpha1\nkind: Site\nname: ams-1\nlabels: {region: eu}\ntimezone: Europe/Amsterdam\ncluster: {context: ams, kustomization: flux-system/apps}\n")},
		"sites/us.yaml":    {Data: []byte("kind: Site\nname: nyc-1\nlabels: {region: us}\n---\nkind: Site\nname: nyc-2\n---\n")},
		"sites/README.md":  {Data: []byte("not a site file: the glob does not match it")},
		"sites/old/x.yaml": {Data: []byte("kind: Site\nname: old\n")},
	}
	p, err := ParsePlanFS("fleetwave.yaml", []byte(filesPlan), files)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range p.Sites {
		got = append(got, s.Name+"@"+s.From)
	}
	want := "hq@ ams-1@sites/ams-1.yaml:1 nyc-1@sites/us.yaml:1 nyc-2@sites/us.yaml:5"
	if strings.Join(got, " ") != want {
		t.Errorf("sites %v, want %s", got, want)
	}
	ams, _ := p.Site("ams-1")
	if ams.Timezone != "Europe/Amsterdam" || ams.Cluster == nil || ams.Cluster.Context != "ams" || ams.Labels["region"] != "eu" {
		t.Errorf("ams-1 = %+v", ams)
	}
	if w, _, _ := p.Wave("rest"); strings.Join(w.Sites, ",") != "ams-1,nyc-1,nyc-2" {
		t.Errorf("rest = %v", w.Sites)
	}
}

func TestSiteFilesOnly(t *testing.T) {
	plan := header + "  siteFiles: \"inventory/*/site.yaml\"\n  waves: [{name: all}]\n"
	files := fstest.MapFS{}
	for i := range 300 {
		files[fmt.Sprintf("inventory/s-%03d/site.yaml", i)] = &fstest.MapFile{Data: fmt.Appendf(nil, "kind: Site\nname: s-%03d\n", i)}
	}
	p, err := ParsePlanFS("fleetwave.yaml", []byte(plan), files)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sites) != 300 || len(p.Waves[0].Sites) != 300 {
		t.Errorf("%d sites, %d in the wave; want 300", len(p.Sites), len(p.Waves[0].Sites))
	}
}

func TestSiteFileErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		plan  string
		files fstest.MapFS
		want  []string // whole lines of the error
	}{
		{
			name:  "twice, in the plan and in a file",
			files: fstest.MapFS{"sites/a.yaml": {Data: []byte("kind: Site\nname: hq\n")}},
			want:  []string{`sites/a.yaml:2:7: duplicate site name "hq" (first defined at fleetwave.yaml:6:14)`},
		},
		{
			name: "twice, in two files",
			files: fstest.MapFS{
				"sites/a.yaml": {Data: []byte("kind: Site\nname: x\n")},
				"sites/b.yaml": {Data: []byte("# b\nkind: Site\nname: x\n")},
			},
			want: []string{`sites/b.yaml:3:7: duplicate site name "x" (first defined at sites/a.yaml:2:7)`},
		},
		{
			name:  "twice in one file",
			files: fstest.MapFS{"sites/a.yaml": {Data: []byte("kind: Site\nname: x\n---\nkind: Site\nname: x\n")}},
			want:  []string{`sites/a.yaml:5:7: duplicate site name "x" (first defined on line 2)`},
		},
		{
			name: "a field of a site",
			files: fstest.MapFS{"sites/a.yaml": {Data: []byte("kind: Site\nname: a\ntimezone: Mars/Olympus\ncluster: {kustomization: apps}\n")},
				"sites/b.yaml": {Data: []byte("kind: Site\nname: B\n")}},
			want: []string{
				`sites/a.yaml:3:11: site "a": unknown time zone "Mars/Olympus"`,
				`sites/a.yaml:4:26: kustomization must be namespace/name, got "apps"`,
				`sites/b.yaml:2:7: invalid site name "B": use lowercase letters, digits, '.', '_' and '-'`,
			},
		},
		{
			name:  "unknown field",
			files: fstest.MapFS{"sites/a.yaml": {Data: []byte("kind: Site\nname: a\nlabel: {x: y}\n")}},
			want:  []string{`sites/a.yaml:3:1: unknown field "label": did you mean "labels"?`},
		},
		{
			name:  "wrong kind",
			files: fstest.MapFS{"sites/a.yaml": {Data: []byte("kind: Site\nname: a\n---\nkind: RolloutPlan\nname: b\n")}},
			want:  []string{`sites/a.yaml:4:7: kind must be "Site", got "RolloutPlan"`},
		},
		{
			name:  "an alias",
			files: fstest.MapFS{"sites/a.yaml": {Data: []byte("kind: Site\nname: a\nlabels: &l {x: y}\n")}},
			want:  []string{`sites/a.yaml:3:9: YAML anchors (&l) are not allowed in a site file: an alias repeats its value wherever it stands, so a small file could decode to gigabytes; write the values out`},
		},
		{
			name:  "too big",
			files: fstest.MapFS{"sites/a.yaml": {Data: []byte("kind: Site\nname: a\n#" + strings.Repeat("x", MaxPlanBytes))}},
			want:  []string{`sites/a.yaml:1:1: the site file is 1048596 bytes; a site file may have at most 1048576 (1 MiB)`},
		},
		{
			name:  "no site",
			files: fstest.MapFS{"sites/a.yaml": {Data: []byte("# nothing yet\n")}},
			want:  []string{`sites/a.yaml:1:1: the file holds no Site document`},
		},
		{
			name:  "matches nothing",
			files: fstest.MapFS{"site/a.yaml": {Data: []byte("kind: Site\nname: a\n")}},
			want:  []string{`fleetwave.yaml:4:14: siteFiles "sites/*.yaml" matches no file`},
		},
		{
			name: "a bad pattern",
			plan: strings.Replace(filesPlan, `"sites/*.yaml"`, `"../sites/[*.yaml"`, 1),
			want: []string{`fleetwave.yaml:4:14: siteFiles "../sites/[*.yaml" is not a valid pattern: write a path from the root of the fleet repo, like "sites/*.yaml" (* ? [a-z] as in path.Match)`},
		},
		{
			name: "read without files",
			want: []string{`fleetwave.yaml:4:14: siteFiles: this plan keeps its sites in files of the fleet repo, and they cannot be read here: read the plan where its repo is`},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := tt.plan
			if plan == "" {
				plan = filesPlan
			}
			var err error
			if tt.files == nil {
				_, err = ParsePlan("fleetwave.yaml", []byte(plan))
			} else {
				_, err = ParsePlanFS("fleetwave.yaml", []byte(plan), tt.files)
			}
			var pe *PlanError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a *PlanError", err)
			}
			if got := err.Error(); got != strings.Join(tt.want, "\n") {
				t.Errorf("error:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestSiteFilesTotalLimit(t *testing.T) {
	files := fstest.MapFS{}
	big := "kind: Site\nname: %s\n#" + strings.Repeat("x", 1<<19) + "\n"
	for i := range MaxSiteFilesBytes/(1<<19) + 1 {
		name := fmt.Sprintf("s-%03d", i)
		files["sites/"+name+".yaml"] = &fstest.MapFile{Data: fmt.Appendf(nil, big, name)}
	}
	_, err := ParsePlanFS("fleetwave.yaml", []byte(filesPlan), files)
	if err == nil || !strings.Contains(err.Error(), `fleetwave.yaml:4:14: siteFiles "sites/*.yaml": the files come to more than 67108864 bytes (64 MiB), at sites/s-127.yaml`) {
		t.Errorf("error %v", err)
	}
}

// FuzzParseSiteFile: no site file panics the parser or passes with a site the plan cannot use.
func FuzzParseSiteFile(f *testing.F) {
	f.Add([]byte("kind: Site\nname: a\nlabels: {region: eu}\n---\nkind: Site\nname: b\n"))
	f.Add([]byte("kind: Site\nname: !00000 00\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("kind: Site\ncluster: [a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePlanFS("fleetwave.yaml", []byte(filesPlan), fstest.MapFS{"sites/a.yaml": {Data: data}})
		var pe *PlanError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("error %v is not a PlanError", err)
		}
		if err == nil {
			for _, s := range p.Sites {
				if !nameRE.MatchString(s.Name) {
					t.Errorf("site %q passed", s.Name)
				}
			}
		}
	})
}

// BenchmarkSiteFiles parses a plan whose 10,000 sites are kept one per file, as LoadPlan does
// for every rollout of such a fleet.
func BenchmarkSiteFiles(b *testing.B) {
	plan := header + "  siteFiles: \"inventory/*.yaml\"\n  waves:\n    - {name: canary, percent: 1, spread: region}\n    - {name: rest}\n"
	files := fstest.MapFS{}
	for i := range 10_000 {
		files[fmt.Sprintf("inventory/s-%05d.yaml", i)] = &fstest.MapFile{Data: fmt.Appendf(nil,
			"apiVersion: fleetwave.dev/v1alpha1\nkind: Site\nname: s-%05d\nlabels: {region: r%d, tier: store}\ntimezone: Europe/Amsterdam\ncluster: {context: c%d, kustomization: flux-system/s-%05d}\n", i, i%8, i%50, i)}
	}
	for b.Loop() {
		p, err := ParsePlanFS("fleetwave.yaml", []byte(plan), files)
		if err != nil || len(p.Sites) != 10_000 {
			b.Fatal(err)
		}
	}
}
