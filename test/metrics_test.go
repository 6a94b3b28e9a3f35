//go:build e2e

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/kubelab"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestMetricsOnServe runs two rollouts on `serve --driver sim` while a real Prometheus scrapes
// its /metrics: the first waits for an approval (a lost push answer makes one Promote attempt
// fail), the second degrades its canary and is reverted. Every fleetwave metric then has the
// series the rollouts must have made, with their labels, as Prometheus stored them; and every
// expression of the Grafana dashboard and of the alert rules is valid PromQL that Prometheus
// evaluates.
func TestMetricsOnServe(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	tc := dialTemporal(t, tp.Address)
	const secret = "metrics-test-secret"
	files := faultPlan("")
	files["fleetwave.yaml"] = strings.NewReplacer("metadata: {name: demo}", "metadata: {name: metered}",
		"{name: eu, selector: {region: eu}, maxParallel: 1, bake: 2s}",
		"{name: eu, selector: {region: eu}, maxParallel: 1, bake: 2s, approval: {approvers: [U0APPROVER], timeout: 1h}}").Replace(files["fleetwave.yaml"])
	gs, good := fleetRepoFiles(t, "metered", files, "app v2")
	_, serveURL := startServeProc(t, bin, tp.Address, gs.URL, []string{"FLEETWAVE_WEBHOOK_SECRET=" + secret})
	prom := kubelab.StartMetrics(t, nil, strings.TrimPrefix(serveURL, "http://"))
	fw := workflows.NewClient(tc, "")
	ctx := context.Background()

	// A push event with a wrong signature, then the real one.
	if err := notifyPush(t, serveURL+"/hooks/git", gs.URL, good, "not-the-secret"); err == nil {
		t.Fatal("a push event signed with the wrong secret was accepted")
	}
	gs.LoseResponses.Store(1) // the canary's push lands, its answer is lost: Promote fails once
	if err := notifyPush(t, serveURL+"/hooks/git", gs.URL, good, secret); err != nil {
		t.Fatal(err)
	}
	first := workflows.RolloutID("metered", good)
	waitFor(t, "the first rollout to wait for its approval", func() bool {
		st, err := fw.Status(ctx, first)
		return err == nil && st.State == rollout.StateApproval
	})
	// While it waits, the open rollout is exported, with the time of its last step.
	expect(t, prom, `max(fleetwave_rollouts{fleet="metered",state="AwaitingApproval"})`, 1)
	expectSeries(t, prom, `fleetwave_rollout_progress_timestamp_seconds{fleet="metered",rollout="`+first+`",state="AwaitingApproval"} > 0`)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "approve", first, "--as", "U0APPROVER"); err != nil {
		t.Fatalf("approve: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, first, 2*time.Minute); err != nil {
		t.Fatalf("the first rollout: %v", err)
	}

	bad := gs.CommitOn(t, "main", "app v3, degraded", map[string]string{"apps/app.yaml": "version: 3\n",
		".fleetwave/sim.yaml": "reconcileDelay: 200ms\ndegraded: [ams-1]\n"})
	if err := notifyPush(t, serveURL+"/hooks/git", gs.URL, bad, secret); err != nil {
		t.Fatal(err)
	}
	second := workflows.RolloutID("metered", bad)
	if err := waitRollout(t, tc, second, 2*time.Minute); err == nil || !strings.Contains(err.Error(), "degraded") {
		t.Fatalf("the second rollout ended with %v, want a degraded site", err)
	}

	f := `fleet="metered"`
	for query, want := range map[string]float64{
		`fleetwave_push_events_total{` + f + `,result="accepted"}`:                              2,
		`fleetwave_push_events_total{` + f + `,result="unauthorized"}`:                          1,
		`fleetwave_rollouts_finished_total{` + f + `,state="Succeeded"}`:                        1,
		`fleetwave_rollouts_finished_total{` + f + `,state="Failed"}`:                           1,
		`fleetwave_wave_duration_seconds_count{` + f + `,wave="canary",result="Succeeded"}`:     1,
		`fleetwave_wave_duration_seconds_count{` + f + `,wave="eu",result="Succeeded"}`:         1,
		`fleetwave_wave_duration_seconds_count{` + f + `,wave="fleet",result="Succeeded"}`:      1,
		`fleetwave_wave_duration_seconds_count{` + f + `,wave="canary",result="Failed"}`:        1,
		`fleetwave_reverts_total{` + f + `,result="written"}`:                                   1,
		`fleetwave_activity_failures_total{` + f + `,activity_type="Promote"}`:                  1,
		`fleetwave_git_pushes_total{` + f + `,result="error"}`:                                  1,
		`fleetwave_git_push_duration_seconds_count{` + f + `,result="error"}`:                   1,
		`count(fleetwave_rollouts{` + f + `}) or vector(0)`:                                     0,
		`count(fleetwave_gate_results_total{` + f + `,check="sim",result="fail",site="ams-1"})`: 1,
	} {
		expect(t, prom, query, want)
	}
	for _, query := range []string{
		// 6 promotions and 1 revert, in pushes of one branch or more.
		`fleetwave_git_pushes_total{` + f + `,result="ok"} >= 4`,
		`fleetwave_gate_results_total{` + f + `,check="sim",result="pass",site="sfo-1"} >= 1`,
		`fleetwave_activity_duration_seconds_count{` + f + `,activity_type="Revert"} >= 1`,
		`fleetwave_activity_duration_seconds_count{` + f + `,activity_type="LoadPlan"} >= 2`,
	} {
		expectSeries(t, prom, query)
	}

	// The dashboard's and the alert rules' expressions, as Prometheus evaluates them.
	root := filepath.Join("..", "deploy", "install", "monitoring")
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	data, err := os.ReadFile(filepath.Join(root, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	grafana := strings.NewReplacer("$__rate_interval", "1m", "$fleet", "metered")
	n := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			n++
			if _, err := prom.Query(ctx, grafana.Replace(target.Expr)); err != nil {
				t.Errorf("dashboard panel %q: %s: %v", p.Title, target.Expr, err)
			}
		}
	}
	rules, err := os.ReadFile(filepath.Join(root, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	exprs := regexp.MustCompile(`(?m)^\s+expr: (?:\|\n((?:\s{10}.*\n)+)|(.+)\n)`).FindAllStringSubmatch(string(rules), -1)
	if len(exprs) != 4 {
		t.Fatalf("found %d alert expressions in alerts.yaml, want 4", len(exprs))
	}
	for _, m := range exprs {
		if _, err := prom.Query(ctx, m[1]+m[2]); err != nil {
			t.Errorf("alert expression %s: %v", m[1]+m[2], err)
		}
	}
	t.Logf("%d dashboard expressions and %d alert expressions evaluated", n, len(exprs))
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool(t), args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The server still answers /metrics with everything in one scrape.
	resp, err := http.Get(serveURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// promtool is the promtool of the Prometheus the tests run.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FLEETWAVE_PROMETHEUS"); p != "" {
		return filepath.Join(filepath.Dir(p), "promtool")
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (it comes with the prometheus package: make prometheus): %v", err)
	}
	return p
}

// expect waits until Prometheus answers query with one sample of value want (a query with no
// sample counts as 0 only through `or vector(0)`).
func expect(t *testing.T, prom *kubelab.Metrics, query string, want float64) {
	t.Helper()
	var got []float64
	var err error
	waitFor(t, fmt.Sprintf("Prometheus to answer %s with %g", query, want), func() bool {
		got, err = prom.Query(context.Background(), query)
		return err == nil && len(got) == 1 && got[0] == want
	})
}

// expectSeries waits until Prometheus answers query with at least one sample.
func expectSeries(t *testing.T, prom *kubelab.Metrics, query string) {
	t.Helper()
	waitFor(t, "Prometheus to answer "+query, func() bool {
		got, err := prom.Query(context.Background(), query)
		return err == nil && len(got) > 0
	})
}
