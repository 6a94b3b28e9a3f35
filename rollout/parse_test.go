package rollout

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParsePlanExample(t *testing.T) {
	data, err := os.ReadFile("testdata/fleetwave.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePlan("fleetwave.yaml", data)
	if err != nil {
		t.Fatalf("ParsePlan: %v", err)
	}
	want := &Plan{
		Name:         "demo",
		SourceBranch: "main",
		SiteBranch:   "sites/{site}",
		Sites: []Site{
			{Name: "ams-1", Labels: map[string]string{"region": "eu-west", "tier": "canary"}, Timezone: "Europe/Amsterdam",
				Cluster: &Cluster{Context: "ams-1", Kustomization: "flux-system/apps"}},
			{Name: "ams-2", Labels: map[string]string{"region": "eu-west"}},
			{Name: "fra-1", Labels: map[string]string{"region": "eu-west"}},
			{Name: "nyc-1", Labels: map[string]string{"region": "us-east"}},
			{Name: "nyc-2", Labels: map[string]string{"region": "us-east"}},
			{Name: "sfo-1", Labels: map[string]string{"region": "us-west"}},
		},
		Waves: []Wave{
			{Name: "canary", Selector: map[string]string{"tier": "canary"}, Sites: []string{"ams-1"}, Bake: 10 * time.Minute},
			{Name: "eu-west", Selector: map[string]string{"region": "eu-west"}, Sites: []string{"ams-2", "fra-1"}, MaxParallel: 2, Bake: 30 * time.Minute},
			{Name: "fleet", Sites: []string{"nyc-1", "nyc-2", "sfo-1"}, Bake: time.Hour},
		},
		Health:      Health{ConvergenceTimeout: 10 * time.Minute, Interval: 30 * time.Second, FailureThreshold: 3, UnknownTimeout: 5 * time.Minute},
		Rollback:    Rollback{Automatic: true, Scope: ScopeWave},
		OnNewCommit: OnNewCommitQueue,
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if got := p.SiteBranchFor("ams-1"); got != "sites/ams-1" {
		t.Errorf("SiteBranchFor = %q", got)
	}
}

const header = "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nspec:\n"

func TestParsePlanDefaultsAndResolution(t *testing.T) {
	tests := []struct {
		name  string
		spec  string
		waves map[string][]string
	}{
		{
			name: "explicit lists and rest",
			spec: `  sites: [{name: a}, {name: b}, {name: c}, {name: d}]
  waves:
    - {name: one, sites: [c]}
    - {name: two, sites: [a, d]}
    - {name: rest}
`,
			waves: map[string][]string{"one": {"c"}, "two": {"a", "d"}, "rest": {"b"}},
		},
		{
			name: "rest wave first still takes only unclaimed sites",
			spec: `  sites: [{name: a, labels: {t: x}}, {name: b}]
  waves:
    - {name: rest}
    - {name: x, selector: {t: x}}
`,
			waves: map[string][]string{"rest": {"b"}, "x": {"a"}},
		},
		{
			name: "selector skips sites claimed by an explicit list in a later wave",
			spec: `  sites: [{name: a, labels: {r: eu}}, {name: b, labels: {r: eu}}]
  waves:
    - {name: eu, selector: {r: eu}}
    - {name: pinned, sites: [a]}
`,
			waves: map[string][]string{"eu": {"b"}, "pinned": {"a"}},
		},
		{
			name: "multi-label selector",
			spec: `  sites: [{name: a, labels: {r: eu, t: canary}}, {name: b, labels: {r: eu}}, {name: c, labels: {t: canary}}]
  waves:
    - {name: c1, selector: {r: eu, t: canary}}
    - {name: rest}
`,
			waves: map[string][]string{"c1": {"a"}, "rest": {"b", "c"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePlan("f.yaml", []byte(header+tt.spec))
			if err != nil {
				t.Fatalf("ParsePlan: %v", err)
			}
			got := map[string][]string{}
			for _, w := range p.Waves {
				got[w.Name] = w.Sites
			}
			if diff := cmp.Diff(tt.waves, got); diff != "" {
				t.Errorf("waves (-want +got):\n%s", diff)
			}
			if p.SourceBranch != "main" || p.SiteBranch != "sites/{site}" || p.Health.FailureThreshold != 3 ||
				p.Health.Interval != 30*time.Second || p.Rollback != (Rollback{Automatic: true, Scope: ScopeWave}) {
				t.Errorf("defaults not applied: %+v", p)
			}
		})
	}
}

func TestParsePlanErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // "line:col: message substring"
	}{
		{
			name: "syntax error",
			doc:  header + "  sites: [\n",
			want: []string{"4:"},
		},
		{
			name: "unknown field",
			doc:  header + "  sites: [{name: a}]\n  waves: [{name: w}]\n  colour: blue\n",
			want: []string{`6:3: unknown field "colour"`},
		},
		{
			name: "unknown watch",
			doc:  header + "  sites: [{name: a}]\n  waves: [{name: w}]\n  health: {watch: forever}\n",
			want: []string{`6:19: health.watch must be rollout or wave, got "forever"`},
		},
		{
			name: "more than 64 waves",
			doc:  header + manyWaves(65),
			want: []string{"135:7: the plan has 65 waves; a plan may have at most 64"},
		},
		{
			name: "unknown field in a wave",
			doc:  header + "  sites: [{name: a}]\n  waves:\n    - name: w\n      parallel: 2\n",
			want: []string{`7:7: unknown field "parallel"`},
		},
		{
			name: "wrong type",
			doc:  header + "  sites: [{name: a}]\n  waves:\n    - name: w\n      maxParallel: two\n",
			want: []string{"7:20:"},
		},
		{
			name: "bad failure budgets",
			doc:  header + "  sites: [{name: a}, {name: b}, {name: c}]\n  waves:\n    - {name: w, sites: [a], maxFailures: two}\n    - {name: x, sites: [b], maxFailures: 150%}\n    - {name: y, maxFailures: -1}\n",
			want: []string{`6:42: maxFailures must be a number of sites (2) or a percentage of the wave ("5%"), got two`,
				`7:42: maxFailures must be a number of sites (2) or a percentage of the wave ("5%"), got 150%`,
				`8:30: maxFailures must be a number of sites (2) or a percentage of the wave ("5%"), got -1`},
		},
		{
			name: "bad offline settings",
			doc:  header + "  sites: [{name: a}]\n  waves: [{name: w}]\n  health:\n    offline: {action: skip, maxDeferred: many}\n",
			want: []string{`7:23: health.offline.action must be defer or fail, got "skip"`,
				`7:42: maxDeferred must be a number of sites (2) or a percentage of the wave ("5%"), got many`},
		},
		{
			name: "defer without maxDeferred",
			doc:  header + "  sites: [{name: a}]\n  waves: [{name: w}]\n  health:\n    offline: {action: defer}\n",
			want: []string{`7:14: health.offline.maxDeferred is required with action defer`},
		},
		{
			name: "offline after the convergence timeout",
			doc:  header + "  sites: [{name: a}]\n  waves: [{name: w}]\n  health:\n    convergenceTimeout: 5m\n    offline: {after: 5m, action: defer, maxDeferred: 1}\n",
			want: []string{`8:22: health.offline.after (5m0s) must be shorter than health.convergenceTimeout (5m0s)`},
		},
		{
			name: "wrong apiVersion and kind",
			doc:  "apiVersion: v1\nkind: Plan\nspec:\n  sites: [{name: a}]\n  waves: [{name: w}]\n",
			want: []string{`1:13: apiVersion must be "fleetwave.dev/v1alpha1"`, `2:7: kind must be "RolloutPlan"`},
		},
		{
			name: "duplicate site",
			doc: header + `  sites:
    - name: a
    - name: a
  waves: [{name: w}]
`,
			want: []string{`6:13: duplicate site name "a" (first defined on line 5)`},
		},
		{
			name: "site in two waves",
			doc: header + `  sites: [{name: a}, {name: b}]
  waves:
    - {name: one, sites: [a]}
    - {name: two, sites: [b, a]}
`,
			want: []string{`7:30: site "a" is in two waves: "one" and "two"`},
		},
		{
			name: "site in no wave",
			doc: header + `  sites:
    - name: a
    - name: b
  waves:
    - {name: one, sites: [a]}
`,
			want: []string{`6:13: site "b" is in no wave`},
		},
		{
			name: "empty wave list and unknown site",
			doc: header + `  sites: [{name: a}]
  waves:
    - name: one
      sites: []
    - name: two
      sites: [zz]
    - name: three
`,
			want: []string{`7:14: wave "one" lists no sites`, `9:15: wave "two" names unknown site "zz"`},
		},
		{
			name: "selector matching nothing",
			doc: header + `  sites: [{name: a, labels: {r: eu}}]
  waves:
    - name: eu
      selector: {r: eu}
    - name: us
      selector: {r: us}
`,
			want: []string{`9:17: wave "us": selector {r=us} matches no site`},
		},
		{
			name: "selector matching only sites of earlier waves",
			doc: header + `  sites: [{name: a, labels: {r: eu}}]
  waves:
    - name: first
      sites: [a]
    - name: eu
      selector: {r: eu}
`,
			want: []string{`9:17: wave "eu": selector {r=eu} matches only sites already in earlier waves`},
		},
		{
			name: "bad durations and numbers",
			doc: header + `  sites: [{name: a}]
  waves:
    - name: w
      bake: 10 minutes
      maxParallel: 0
  health:
    interval: -5s
    failureThreshold: 0
    convergenceTimeout: 1d
`,
			want: []string{
				`7:13: invalid duration "10 minutes"`,
				`8:20: maxParallel must be at least 1, got 0`,
				`12:25: invalid duration "1d"`,
				`10:15: duration "-5s" must be positive`,
				`11:23: failureThreshold must be at least 1, got 0`,
			},
		},
		{
			name: "two rest waves, bad scope, bad branch template",
			doc: header + `  siteBranch: deploy
  sites: [{name: a}]
  waves:
    - name: one
    - name: two
  rollback: {scope: everything}
  onNewCommit: later
`,
			want: []string{
				`4:15: siteBranch "deploy" must contain {site}`,
				`8:11: waves "one" and "two" both take the remaining sites`,
				`9:21: rollback scope must be site, wave or all`,
				`10:16: onNewCommit must be supersede or queue, got "later"`,
			},
		},
		{
			name: "bad approvals and notify",
			doc: header + `  sites: [{name: a}, {name: b}, {name: c}]
  waves:
    - name: one
      sites: [a]
      approval: {approvers: [U012ABC, alice, U012ABC], quorum: 3, onTimeout: wait}
    - name: two
      sites: [b]
      approval: {approvers: [], timeout: 0s}
    - name: rest
      approval: {approvers: ["@sre-leads"], quorum: 0, timeout: 1h, remindBefore: 1h}
  notify: {slack: {channel: deploys, operators: ["@Ops"]}}
`,
			want: []string{
				`8:39: wave "one": approver "alice" is neither a Slack user ID`,
				`8:46: wave "one": approver "U012ABC" is listed twice`,
				`8:64: wave "one": quorum 3 is more than the 1 approvers listed`,
				`8:78: wave "one": onTimeout must be reject or pause, got "wait"`,
				`11:17: wave "two": approval needs approvers`,
				`11:42: duration "0s" must be positive`,
				`13:53: wave "rest": quorum must be at least 1, got 0`,
				`13:83: wave "rest": remindBefore 1h0m0s must be shorter than the approval's timeout 1h0m0s`,
				`14:29: notify.slack.channel must be a channel name`,
				`14:50: operator "@Ops" is neither`,
			},
		},
		{
			name: "bad names",
			doc: header + `  sites: [{name: "Ams 1"}, {labels: {a: b}}]
  waves: [{name: W}]
`,
			want: []string{`4:18: invalid site name "Ams 1"`, `4:28: site 2 has no name`, `5:18: invalid wave name "W"`},
		},
		{
			name: "no sites no waves",
			doc:  header + "  sourceBranch: main\n",
			want: []string{"the plan lists no sites", "the plan has no waves"},
		},
		{
			name: "empty document",
			doc:  "",
			want: []string{"1:1: expected exactly one YAML document"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePlan("plans/f.yaml", []byte(tt.doc))
			var pe *PlanError
			if !errors.As(err, &pe) {
				t.Fatalf("ParsePlan error = %v, want *PlanError", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, "plans/f.yaml:"+w) && !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "plans/f.yaml:") {
					t.Errorf("line %q does not start with the file name", line)
				}
			}
			if len(pe.Issues) != len(tt.want) && tt.name != "syntax error" && tt.name != "no sites no waves" {
				t.Errorf("got %d issues, want %d:\n%s", len(pe.Issues), len(tt.want), msg)
			}
		})
	}
}

func TestParsePlanApprovals(t *testing.T) {
	doc := header + `  sites: [{name: a}, {name: b}]
  waves:
    - name: one
      sites: [a]
      approval: {approvers: [U012ABC, "@sre-leads"], quorum: 2, timeout: 4h, onTimeout: pause, remindBefore: 30m}
    - name: rest
      approval: {approvers: [W0ADMIN]}
  notify: {slack: {channel: "#deploys"}}
`
	p, err := ParsePlan("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []*Approval{
		{Approvers: []string{"U012ABC", "@sre-leads"}, Quorum: 2, Timeout: 4 * time.Hour, OnTimeout: OnTimeoutPause, RemindBefore: 30 * time.Minute},
		{Approvers: []string{"W0ADMIN"}, Quorum: 1, Timeout: DefaultApprovalTimeout, OnTimeout: OnTimeoutReject},
	}
	for i, w := range want {
		if diff := cmp.Diff(w, p.Waves[i].Approval); diff != "" {
			t.Errorf("wave %d approval (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff(&SlackNotify{Channel: "#deploys"}, p.Notify.Slack); diff != "" {
		t.Errorf("notify (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"@sre-leads", "U012ABC", "W0ADMIN"}, p.Operators()); diff != "" {
		t.Errorf("Operators (-want +got):\n%s", diff)
	}
	if got := p.Waves[0].Approval.Groups(); !cmp.Equal(got, []string{"sre-leads"}) {
		t.Errorf("Groups = %v", got)
	}
}

func TestBatches(t *testing.T) {
	tests := []struct {
		sites []string
		max   int
		want  [][]string
	}{
		{[]string{"a", "b", "c"}, 0, [][]string{{"a", "b", "c"}}},
		{[]string{"a", "b", "c"}, 2, [][]string{{"a", "b"}, {"c"}}},
		{[]string{"a", "b", "c"}, 1, [][]string{{"a"}, {"b"}, {"c"}}},
		{[]string{"a", "b"}, 5, [][]string{{"a", "b"}}},
	}
	for _, tt := range tests {
		got := Wave{Sites: tt.sites, MaxParallel: tt.max}.Batches()
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Batches(%v, %d) (-want +got):\n%s", tt.sites, tt.max, diff)
		}
	}
}

func TestParsePlanFailureBudget(t *testing.T) {
	doc := header + `  sites: [{name: a}, {name: b}, {name: c}]
  waves:
    - {name: canary, sites: [a]}
    - {name: two, sites: [b], maxFailures: 2}
    - {name: rest, maxFailures: 5%}
`
	p, err := ParsePlan("fleetwave.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []FailureBudget{{}, {Count: 2}, {Percent: 5}}
	for i, w := range p.Waves {
		if w.MaxFailures != want[i] {
			t.Errorf("wave %s: maxFailures %+v, want %+v", w.Name, w.MaxFailures, want[i])
		}
	}
	for _, tt := range []struct {
		b     FailureBudget
		sites int
		want  int
		text  string
	}{
		{FailureBudget{}, 100, 0, "0"},
		{FailureBudget{Count: 2}, 1, 2, "2"},
		{FailureBudget{Percent: 5}, 9000, 450, "5%"},
		{FailureBudget{Percent: 5}, 19, 0, "5%"}, // rounded down: 0.95 sites
		{FailureBudget{Percent: 100}, 3, 3, "100%"},
	} {
		if got := tt.b.Allowed(tt.sites); got != tt.want || tt.b.String() != tt.text {
			t.Errorf("%+v.Allowed(%d) = %d (%s), want %d (%s)", tt.b, tt.sites, got, tt.b, tt.want, tt.text)
		}
	}
}

// TestParsePlanOffline: without health.offline, or with its defaults, a plan keeps the
// fail-closed rules; with defer it
// keeps its after and its maxDeferred, and Defers says so.
func TestParsePlanOffline(t *testing.T) {
	p, err := ParsePlan("fleetwave.yaml", []byte(header+"  sites: [{name: a}]\n  waves: [{name: w}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Health.Defers() {
		t.Errorf("a plan without health.offline defers: %+v", p.Health.Offline)
	}
	p, err = ParsePlan("fleetwave.yaml", []byte(header+"  sites: [{name: a}]\n  waves: [{name: w}]\n  health: {offline: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Offline{After: DefaultOfflineAfter, Action: OfflineFail, Probe: DefaultOfflineProbe}); p.Health.Offline != want || p.Health.Defers() {
		t.Errorf("empty offline %+v (defers %v), want %+v", p.Health.Offline, p.Health.Defers(), want)
	}
	p, err = ParsePlan("fleetwave.yaml", []byte(header+"  sites: [{name: a}]\n  waves: [{name: w}]\n  health:\n    offline: {after: 90s, action: defer, maxDeferred: 10%, probe: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Offline{After: 90 * time.Second, Action: OfflineDefer, MaxDeferred: FailureBudget{Percent: 10}, Probe: 30 * time.Second}); p.Health.Offline != want || !p.Health.Defers() {
		t.Errorf("offline %+v (defers %v), want %+v", p.Health.Offline, p.Health.Defers(), want)
	}
	if got := p.Scaled(60).Health.Offline; got.After != 1500*time.Millisecond || got.Probe != 500*time.Millisecond {
		t.Errorf("scaled by 60: after %s, probe %s; want 1.5s and 500ms", got.After, got.Probe)
	}
	_, err = ParsePlan("fleetwave.yaml", []byte(header+"  sites: [{name: a}]\n  waves: [{name: w}]\n  health:\n    offline: {action: defer, maxDeferred: 1, probe: 0s}\n"))
	if err == nil || !strings.Contains(err.Error(), "fleetwave.yaml:7:53:") || !strings.Contains(err.Error(), `duration "0s" must be positive`) {
		t.Errorf("probe 0s: %v; want an error at its position", err)
	}
}

// TestPlanCatchUp: a catch-up's plan is the site's wave with the site alone, one batch, no
// failure budget and no approval; the rest of the plan stays.
func TestPlanCatchUp(t *testing.T) {
	p, err := ParsePlan("fleetwave.yaml", []byte(header+`  sites:
    - {name: a, labels: {tier: canary}}
    - {name: b}
    - {name: c}
  waves:
    - {name: canary, selector: {tier: canary}, bake: 1m}
    - {name: rest, maxParallel: 2, bake: 5m, maxFailures: 1, approval: {approvers: [U012ABC]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	q, err := p.CatchUp("c")
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Waves) != 1 {
		t.Fatalf("%d waves, want the one of c", len(q.Waves))
	}
	w := q.Waves[0]
	if w.Name != "rest" || !slices.Equal(w.Sites, []string{"c"}) || w.MaxParallel != 1 || w.Bake != 5*time.Minute ||
		w.MaxFailures != (FailureBudget{}) || w.Approval != nil {
		t.Errorf("catch-up wave %+v; want rest with c alone, one batch, the 5m bake, no budget, no approval", w)
	}
	if len(p.Waves) != 2 || len(p.Waves[1].Sites) != 2 || p.Waves[1].Approval == nil {
		t.Errorf("the plan itself changed: %+v", p.Waves)
	}
	if len(q.Sites) != 3 || q.Health.Offline != p.Health.Offline || q.Health.ConvergenceTimeout != p.Health.ConvergenceTimeout {
		t.Errorf("the catch-up's plan lost its sites or health settings")
	}
	if _, err := p.CatchUp("gone"); err == nil || !strings.Contains(err.Error(), "site gone is in no wave") {
		t.Errorf("a site no longer in the plan: %v", err)
	}
}

// TestCheckSecretsComeFromTheEnvironment: a password written in a check URL is refused (it
// would sit in git and in every workflow history); {env.NAME} in its place, or in a query, is
// a valid plan.
func TestCheckSecretsComeFromTheEnvironment(t *testing.T) {
	plan := func(url string) string {
		return header + "  sites: [{name: a}]\n  waves: [{name: w}]\n  health:\n    checks:\n      - {name: smoke, http: {url: \"" + url + "\"}}\n"
	}
	_, err := ParsePlan("f.yaml", []byte(plan("https://probe:hunter2@a.example/health")))
	if err == nil || !strings.Contains(err.Error(), "f.yaml:8:35:") || !strings.Contains(err.Error(), "write {env.FLEETWAVE_CHECK_NAME} in its place") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("literal password: %v", err)
	}
	for _, url := range []string{"https://probe:{env.FLEETWAVE_CHECK_PROBE_PASSWORD}@a.example/health", "https://a.example/health?token={env.FLEETWAVE_CHECK_PROBE_TOKEN}", "https://{site}.example/{env.FLEETWAVE_CHECK_PATH_TOKEN}/health", "https://probe@a.example/health"} {
		if _, err := ParsePlan("f.yaml", []byte(plan(url))); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
}

// TestPlainYAMLMessages: what go-yaml reports in Go's words (a Go type, a struct name, a raw
// character) comes out naming the field and what it wants, with the nearest field for a typo.
func TestPlainYAMLMessages(t *testing.T) {
	head := "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: demo}\nspec:\n"
	for _, c := range []struct{ name, plan, want string }{
		{"typo", head + "  sites: [{name: a}]\n  waves: [{name: all, maxParalel: 2}]\n", `f:6:23: unknown field "maxParalel": did you mean "maxParallel"?`},
		{"far from any field", head + "  sites: [{name: a}]\n  waves: [{name: all, frobnicate: 2}]\n", `f:6:23: unknown field "frobnicate"`},
		{"string for a number", head + "  sites: [{name: a}]\n  waves: [{name: all, maxParallel: two}]\n", `f:6:36: maxParallel: want a number, got "two"`},
		{"string for a bool", head + "  sites: [{name: a}]\n  rollback: {automatic: maybe}\n", `f:6:25: automatic: want true or false, got "maybe"`},
		{"string for a list", head + "  sites: ams-1\n", "f:5:10: sites: want a list, got a string"},
		{"list for a mapping", head + "  sites: [{name: a, labels: [x]}]\n", "f:5:29: labels: want a mapping (key: value), got a list"},
		{"byte order mark", "\ufeff" + head, "f:1:1: the file starts with a byte order mark (BOM)"},
		{"tab", head + "\tsites: []\n", "f:5:1: a tab character: YAML indents with spaces only"},
	} {
		_, err := ParsePlan("f", []byte(c.plan))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "Go struct") || strings.Contains(err.Error(), "fileDoc")) {
			t.Errorf("%s: Go's words in %q", c.name, err)
		}
	}
}

// manyWaves is a spec of n sites s0.. and n waves w0.., each taking its own site.
func manyWaves(n int) string {
	var b strings.Builder
	b.WriteString("  sites:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - {name: s%d}\n", i)
	}
	b.WriteString("  waves:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - {name: w%d, sites: [s%d]}\n", i, i)
	}
	return b.String()
}

// TestPlanWarnings: a bake shorter than a failure streak is allowed, with a warning on the
// wave's line; plan show's gate says what the wave takes at least.
func TestPlanWarnings(t *testing.T) {
	p, err := ParsePlan("f.yaml", []byte(header+`  sites: [{name: a}, {name: b}]
  waves:
    - name: canary
      sites: [a]
    - name: rest
      bake: 10m
  health: {interval: 30s, failureThreshold: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Issue{{Line: 6, Column: 13, Message: "wave canary: bake 0s is shorter than (failureThreshold - 1) × interval = 1m0s: " +
		"a site failing at the end of the bake is observed past it until it passes a clean round or degrades"}}
	if diff := cmp.Diff(want, p.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if got := p.Health.ShortestGate(0); got != "1 clean round" {
		t.Errorf("gate of bake 0: %q", got)
	}
	if got := p.Health.ShortestGate(10 * time.Minute); got != "10m0s, 21 rounds" {
		t.Errorf("gate of bake 10m: %q", got)
	}
	if !p.Health.WatchesRollout() {
		t.Error("the default watch is the whole rollout")
	}
}
