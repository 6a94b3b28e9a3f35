//go:build e2e

package test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/kubelab"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// The real-sites fleet: three sites, each a kube-apiserver running the real Flux
// source-controller and kustomize-controller, following its site branch on the test git
// server; a real Prometheus scraping an exporter whose error ratio per site the test sets.
var kubeSites = []string{"canary", "region", "rest"}

func kubePlan(promURL, probeURL string) string {
	return fmt.Sprintf(`apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: real}
spec:
  sites:
    - {name: canary, labels: {tier: canary}, cluster: {context: canary, kustomization: flux-system/apps}}
    - {name: region, labels: {region: eu}, cluster: {context: region, kustomization: flux-system/apps}}
    - {name: rest, cluster: {context: rest, kustomization: flux-system/apps}}
  waves:
    - {name: canary, selector: {tier: canary}, bake: 8s}
    - {name: region, selector: {region: eu}, bake: 2s}
    - {name: rest, bake: 1s}
  health:
    interval: 1s
    failureThreshold: 2
    convergenceTimeout: 60s
    unknownTimeout: 4s
    checks:
      - name: error-rate
        prometheus:
          url: %q
          query: '%s{site="{site}"}'
          max: 0.05
      - name: smoke
        http: {url: %q, status: 200, body: "^ok", timeout: 2s}
  rollback: {scope: wave}
`, promURL, kubelab.ErrorRatioMetric, probeURL)
}

// app is the site workload: a ConfigMap whose version the test changes.
func app(version string) map[string]string {
	return map[string]string{
		"deploy/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [app.yaml]\n",
		"deploy/app.yaml":           "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  version: \"" + version + "\"\n",
	}
}

type kubeLab struct {
	t       *testing.T
	gs      *gittest.Server
	sites   *kubelab.Lab
	metrics *kubelab.Metrics
	tc      client.Client
	fw      *workflows.Client
	// temporal is the Temporal dev server's address.
	temporal string
}

func newKubeLab(t *testing.T) *kubeLab {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	l := &kubeLab{t: t}
	l.metrics = kubelab.StartMetrics(t, kubeSites)
	probe := strings.Replace(l.metrics.ProbeURL("canary"), "canary", "{site}", 1)
	files := app("1")
	files["fleetwave.yaml"] = kubePlan(l.metrics.URL, probe)
	var branches []string
	for _, s := range kubeSites {
		branches = append(branches, "sites/"+s)
	}
	l.gs = gittest.NewServer(t, "fleet", files, branches...)
	l.sites = kubelab.Start(t, kubelab.Options{GitURL: l.gs.URL, Sites: kubeSites})
	tp := testenv.StartTemporal(t, workflows.SearchAttributes...)
	l.temporal = tp.Address

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	writer, err := gitops.Open(ctx, l.gs.URL, gitops.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	// fleetwave reads the sites as the restricted user of deploy/install/site/site-rbac.yaml.
	kube := deploy.NewKube(l.sites.Kubeconfig)
	kube.Timeout = 3 * time.Second
	tc, err := client.Dial(client.Options{HostPort: tp.Address, Logger: tlog.NewStructuredLogger(logger)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	w := worker.New(tc, workflows.TaskQueue("real"), worker.Options{})
	if err := workflows.Register(w, workflows.Activities{
		Git:        &activities.Git{Repo: writer, Sites: kube},
		Sites:      &activities.Sites{Driver: kube, Poll: 250 * time.Millisecond},
		Executions: &activities.Executions{Client: tc},
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	l.tc, l.fw = tc, workflows.NewClient(tc, "")
	return l
}

// start starts the rollout of commit; wait waits for it to end and returns its status.
func (l *kubeLab) start(commit string) string {
	l.t.Helper()
	run, err := l.fw.Start(context.Background(), workflows.RolloutInput{Fleet: "real", Commit: commit})
	if err != nil {
		l.t.Fatal(err)
	}
	return run.GetID()
}

func (l *kubeLab) wait(id string) rollout.Status {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The workflow's end, not its status, says it ended; a failed rollout is an error here.
	_ = l.tc.GetWorkflow(ctx, id, "").Get(ctx, nil)
	st, err := l.fw.Status(ctx, id)
	if err != nil {
		l.t.Fatalf("status of %s: %v", id, err)
	}
	if !st.State.Done() {
		l.t.Fatalf("rollout %s ended in state %s", id, st.State)
	}
	return st
}

// waitFor polls the rollout's status until cond holds.
func (l *kubeLab) waitFor(id, what string, cond func(rollout.Status) bool) rollout.Status {
	l.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := l.fw.Status(context.Background(), id)
		if err == nil && cond(st) {
			return st
		}
		if err == nil && st.State.Done() {
			l.t.Fatalf("rollout %s ended (%s: %s) before %s", id, st.State, st.Reason, what)
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("rollout %s: no %s after 2m (state %s, err %v)", id, what, st.State, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func baking(wave string) func(rollout.Status) bool {
	return func(st rollout.Status) bool {
		return st.Wave == wave && len(st.Waves) > 0 && waveState(st, wave) == rollout.StateBaking
	}
}

func waveState(st rollout.Status, wave string) rollout.State {
	for _, w := range st.Waves {
		if w.Name == wave {
			return w.State
		}
	}
	return ""
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var configMapGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// applied returns the revision the site's Flux last applied and the app version on the site.
func (l *kubeLab) applied(site string) (string, string) {
	l.t.Helper()
	s := l.sites.Sites[site]
	k := s.GetKustomization(l.t)
	rev, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
	cm, err := s.Dynamic().Resource(configMapGVR).Namespace(kubelab.TargetNamespace).Get(context.Background(), "app", metav1.GetOptions{})
	if err != nil {
		l.t.Fatalf("site %s: configmap app: %v", site, err)
	}
	version, _, _ := unstructured.NestedString(cm.Object, "data", "version")
	return rev, version
}

// waitApplied waits until the site's Flux applied commit and reports Ready.
func (l *kubeLab) waitApplied(site, commit string) {
	l.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	kube := deploy.NewKube(l.sites.Kubeconfig)
	target := rollout.Site{Name: site, Cluster: &rollout.Cluster{Kustomization: "flux-system/apps"}}
	for {
		st, _ := kube.Observe(context.Background(), target)
		if st.Converged(commit) {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("site %s: Flux did not apply %s: %+v", site, rollout.Short(commit), st)
		}
		_ = kube.RequestReconcile(context.Background(), target)
		time.Sleep(500 * time.Millisecond)
	}
}

func TestRealSites(t *testing.T) {
	l := newKubeLab(t)
	heads := func() map[string]string {
		out := map[string]string{}
		for _, s := range kubeSites {
			out[s] = l.gs.Head(t, "sites/"+s)
		}
		return out
	}

	t.Run("fleetwave check passes", func(t *testing.T) {
		bin := buildFleetwave(t)
		cmd := exec.Command(bin, "check", "--repo", l.gs.URL, "--kubeconfig", l.sites.Kubeconfig, "--address", l.temporal)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "✗") {
			t.Fatalf("fleetwave check: %v\n%s", err, out)
		}
		for _, want := range []string{"✔ workers: 1 poll task queue fleetwave/real", "✔ sites: every context answers", "✔ site branches: all 3 exist"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("fleetwave check says no %q:\n%s", want, out)
			}
		}
	})

	var good map[string]string // site heads after the last good rollout
	t.Run("good commit reaches every site through real Flux", func(t *testing.T) {
		c := l.gs.CommitOn(t, "main", "app v2", app("2"))
		st := l.wait(l.start(c))
		if st.State != rollout.StateSucceeded {
			t.Fatalf("state %s: %s", st.State, st.Reason)
		}
		good = heads()
		for _, s := range kubeSites {
			rev, version := l.applied(s)
			if rollout.RevisionHash(rev) != good[s] || version != "2" {
				t.Errorf("site %s: Flux applied %q (version %q), want the promotion %s with version 2", s, rev, version, rollout.Short(good[s]))
			}
			gittest.Git(t, l.gs.Dir, "diff", "--quiet", c, good[s]) // the promotion carries the source tree
		}
		// Every gate measured something real and kept it.
		for _, w := range st.Waves {
			for _, s := range w.Sites {
				if s.Verdict != rollout.VerdictHealthy || len(s.Checks) != 2 {
					t.Errorf("site %s: verdict %s, checks %+v", s.Name, s.Verdict, s.Checks)
					continue
				}
				if s.Checks[0].Name != "error-rate" || !s.Checks[0].OK || s.Checks[0].Threshold != "<= 0.05" || s.Checks[0].At.IsZero() {
					t.Errorf("site %s: error-rate %+v", s.Name, s.Checks[0])
				}
				if s.Checks[1].Name != "smoke" || !s.Checks[1].OK || s.Checks[1].Value != 200 {
					t.Errorf("site %s: smoke %+v", s.Name, s.Checks[1])
				}
			}
		}
	})
	if good == nil {
		t.FailNow()
	}

	t.Run("the driver's watch tells when Flux changes a Kustomization", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		kube := deploy.NewKube(l.sites.Kubeconfig)
		target := rollout.Site{Name: "canary", Cluster: &rollout.Cluster{Kustomization: "flux-system/apps"}}
		changes, err := kube.Watch(ctx, []rollout.Site{target})
		if err != nil {
			t.Fatal(err)
		}
		receive := func(what string) {
			t.Helper()
			select {
			case <-changes:
			case <-ctx.Done():
				t.Fatalf("no notification %s", what)
			}
		}
		receive("when the watch started (the Kustomization as it is)")
		// The reconcile request annotates the Kustomization, and Flux then writes its status.
		if err := kube.RequestReconcile(ctx, target); err != nil {
			t.Fatal(err)
		}
		receive("after the reconcile request")
	})

	t.Run("manifest Flux cannot apply is reverted through git", func(t *testing.T) {
		bad := app("3")
		bad["deploy/app.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  version: [3]\n"
		c := l.gs.CommitOn(t, "main", "app v3 (broken)", bad)
		st := l.wait(l.start(c))
		if st.State != rollout.StateFailed || !strings.Contains(st.Reason, "site canary") || !strings.Contains(st.Reason, "flux failed to apply") ||
			!strings.Contains(st.Reason, "ReconciliationFailed: ConfigMap/default/app dry-run failed") {
			t.Fatalf("state %s, reason %q; want canary failed by Flux", st.State, st.Reason)
		}
		now := heads()
		if now["region"] != good["region"] || now["rest"] != good["rest"] {
			t.Errorf("later waves were touched: %v, want %v", now, good)
		}
		// The canary's branch ends with a real revert: its tree is the last good one.
		gittest.Git(t, l.gs.Dir, "diff", "--quiet", good["canary"], now["canary"])
		if subject := gittest.Git(t, l.gs.Dir, "log", "-1", "--format=%s", now["canary"]); !strings.HasPrefix(subject, "Revert") {
			t.Errorf("canary head %q is not a revert", subject)
		}
		// Flux applies the revert and the site is Ready again.
		l.waitApplied("canary", now["canary"])
		if _, version := l.applied("canary"); version != "2" {
			t.Errorf("canary runs version %q after the revert, want 2", version)
		}
		good = now
	})

	t.Run("metric crossing its threshold during bake reverts", func(t *testing.T) {
		c := l.gs.CommitOn(t, "main", "app v4", app("4"))
		id := l.start(c)
		l.waitFor(id, "canary bake", baking("canary"))
		l.metrics.SetErrorRatio("canary", 0.5)
		defer func() {
			l.metrics.SetErrorRatio("canary", 0)
			l.metrics.WaitScraped(t, "canary", 0)
		}()
		st := l.wait(id)
		if st.State != rollout.StateFailed || !strings.Contains(st.Reason, "check error-rate failed (value 0.5, want <= 0.05)") {
			t.Fatalf("state %s, reason %q; want the error-rate check to fail", st.State, st.Reason)
		}
		now := heads()
		gittest.Git(t, l.gs.Dir, "diff", "--quiet", good["canary"], now["canary"])
		if now["region"] != good["region"] {
			t.Errorf("region was promoted")
		}
		l.waitApplied("canary", now["canary"])
		good = now
	})

	t.Run("unreachable API server makes the site unknown and the wave fails closed", func(t *testing.T) {
		c := l.gs.CommitOn(t, "main", "app v5", app("5"))
		id := l.start(c)
		l.waitFor(id, "canary bake", baking("canary"))
		stopped := time.Now()
		l.sites.Sites["canary"].StopAPIServer(t)
		st := l.waitFor(id, "unknown canary", func(st rollout.Status) bool {
			return len(st.Waves) > 0 && len(st.Waves[0].Sites) > 0 && st.Waves[0].Sites[0].Verdict == rollout.VerdictUnknown
		})
		t.Logf("canary Unknown %s after its API server stopped: %s", time.Since(stopped).Round(time.Millisecond), st.Waves[0].Sites[0].Message)
		st = l.waitFor(id, "rollback", func(st rollout.Status) bool { return st.State == rollout.StateRollingBack || st.State.Done() })
		l.sites.Sites["canary"].StartAPIServer(t)
		st = l.wait(id)
		if st.State != rollout.StateFailed || !strings.Contains(st.Reason, "unreachable for") || !strings.Contains(st.Reason, "unknownTimeout 4s") {
			t.Fatalf("state %s, reason %q; want the canary to fail closed after unknownTimeout", st.State, st.Reason)
		}
		now := heads()
		gittest.Git(t, l.gs.Dir, "diff", "--quiet", good["canary"], now["canary"])
		if now["region"] != good["region"] {
			t.Errorf("region was promoted")
		}
		l.waitApplied("canary", now["canary"])
	})

	t.Run("a wrong kustomization fails the rollout before any write", func(t *testing.T) {
		before := heads()
		plan := strings.Replace(kubePlan(l.metrics.URL, "http://127.0.0.1:1/{site}"),
			"{context: region, kustomization: flux-system/apps}", "{context: region, kustomization: flux-system/typo}", 1)
		c := l.gs.CommitOn(t, "main", "plan with a typo", map[string]string{"fleetwave.yaml": plan})
		st := l.wait(l.start(c))
		want := `site region: cluster.kustomization: context "region": Kustomization flux-system/typo not found`
		if st.State != rollout.StateFailed || !strings.Contains(st.Reason, want) {
			t.Fatalf("state %s, reason %q; want %q", st.State, st.Reason, want)
		}
		if after := heads(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("site branches changed: %v, want %v", after, before)
		}
		// Put the good plan back for what follows.
		l.gs.CommitOn(t, "main", "fix the plan", map[string]string{"fleetwave.yaml": kubePlan(l.metrics.URL,
			strings.Replace(l.metrics.ProbeURL("canary"), "canary", "{site}", 1))})
	})

	bin := buildFleetwave(t)
	t.Run("plan validate --kubeconfig names the site and field", func(t *testing.T) {
		dir := t.TempDir()
		good := filepath.Join(dir, "good.yaml")
		bad := filepath.Join(dir, "bad.yaml")
		plan := kubePlan(l.metrics.URL, "http://127.0.0.1:1/{site}")
		writeFile(t, good, plan)
		writeFile(t, bad, strings.Replace(plan, "{context: rest,", "{context: nowhere,", 1))
		out, err := exec.Command(bin, "plan", "validate", good, "--kubeconfig", l.sites.Kubeconfig).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "valid: 3 sites in 3 waves") {
			t.Errorf("validate good: %v\n%s", err, out)
		}
		out, err = exec.Command(bin, "plan", "validate", bad, "--kubeconfig", l.sites.Kubeconfig).CombinedOutput()
		want := bad + `: site rest: cluster.context: context "nowhere" not found in kubeconfig ` + l.sites.Kubeconfig
		if err == nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("validate bad: %v\n%s\nwant %s", err, out, want)
		}
		if strings.Contains(string(out), "token") {
			t.Errorf("output mentions a token: %s", out)
		}
	})

	t.Run("fleetwave sites shows the fleet and fails on an unknown site", func(t *testing.T) {
		sites := func() ([]map[string]any, error) {
			cmd := exec.Command(bin, "sites", "--repo", l.gs.URL, "--kubeconfig", l.sites.Kubeconfig, "-o", "json")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			rows, jerr := listItems[map[string]any](stdout.String())
			if jerr != nil {
				t.Fatalf("sites -o json: %v\n%s\n%s", jerr, stdout.String(), stderr.String())
			}
			return rows, err
		}
		rows, err := sites()
		if err != nil {
			t.Errorf("sites exited with %v on a healthy fleet: %v", err, rows)
		}
		now := heads()
		for i, r := range rows {
			name := kubeSites[i]
			if r["site"] != name || r["verdict"] != "Healthy" || r["flux"] != "Ready" || r["drift"] != false ||
				r["head"] != now[name] || r["applied"] != now[name] || len(r["checks"].([]any)) != 2 {
				t.Errorf("row %d = %v", i, r)
			}
		}
		// A site whose Flux cannot be read makes the command fail, for scripts.
		l.sites.Sites["rest"].StopAPIServer(t)
		rows, err = sites()
		l.sites.Sites["rest"].StartAPIServer(t)
		if err == nil || rows[2]["verdict"] != "Unknown" || rows[2]["flux"] != "Unknown" || rows[0]["verdict"] != "Healthy" {
			t.Errorf("with rest down: err %v, rows %v", err, rows)
		}
		// Drift: a commit on a site branch that Flux has not applied (its source is suspended,
		// so this cannot race with Flux's interval).
		suspend := []byte(`{"spec":{"suspend":true}}`)
		if _, err := l.sites.Sites["region"].Dynamic().Resource(kubelab.GitRepositoryGVR).Namespace(kubelab.Namespace).
			Patch(context.Background(), kubelab.GitRepositoryName, types.MergePatchType, suspend, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		l.gs.CommitOn(t, "sites/region", "hand edit", map[string]string{"deploy/extra.txt": "x"})
		rows, _ = sites()
		if rows[1]["drift"] != true || rows[0]["drift"] != false {
			t.Errorf("drift not shown: %v", rows)
		}
		text, _ := exec.Command(bin, "sites", "--repo", l.gs.URL, "--kubeconfig", l.sites.Kubeconfig).CombinedOutput()
		t.Logf("fleetwave sites:\n%s", text)
		if !strings.Contains(string(text), "DRIFT") || !strings.Contains(string(text), "error-rate=0 ok") {
			t.Errorf("text output:\n%s", text)
		}
	})

	rss, err := l.sites.RSS()
	if err == nil {
		t.Logf("resident memory: %v", rss)
	}
}
