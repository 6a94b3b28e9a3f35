//go:build e2e

package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/kubelab"
)

// TestKubeRoundIsOneListPerContext: 25 sites on one real kube-apiserver (one applied by real
// Flux, 24 more Kustomizations beside it) are observed in one health round with one list
// request, counted by the API server itself (apiserver_request_total), not 25 gets; the site
// Flux applied is judged as Observe judges it alone, and a site whose Kustomization does not
// exist is Unknown with the reason.
func TestKubeRoundIsOneListPerContext(t *testing.T) {
	gs := gittest.NewServer(t, "fleet", app("1"), "sites/a")
	lab := kubelab.Start(t, kubelab.Options{GitURL: gs.URL, Sites: []string{"a"}})
	site := lab.Sites["a"]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	sites := []rollout.Site{{Name: "a", Cluster: &rollout.Cluster{Context: "a", Kustomization: site.Kustomization}}}
	var extra []string
	for i := range 23 {
		name := fmt.Sprintf("k-%02d", i)
		extra = append(extra, fmt.Sprintf(`apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: %s, namespace: flux-system}
spec: {suspend: true, interval: 10m, path: ./deploy, prune: false, sourceRef: {kind: GitRepository, name: fleet}}
`, name))
		sites = append(sites, rollout.Site{Name: "s-" + name, Cluster: &rollout.Cluster{Context: "a", Kustomization: "flux-system/" + name}})
	}
	objs, err := kubelab.DecodeYAML([]byte(strings.Join(extra, "---\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Apply(ctx, false, objs...); err != nil {
		t.Fatal(err)
	}
	sites = append(sites, rollout.Site{Name: "gone", Cluster: &rollout.Cluster{Context: "a", Kustomization: "flux-system/nope"}})

	kube := deploy.NewKube(lab.Kubeconfig) // the fleetwave user, with the rights of site-rbac.yaml
	alone, err := kube.Observe(ctx, sites[0])
	if err != nil || !alone.Reachable {
		t.Fatalf("Observe: %+v, %v", alone, err)
	}
	before := kustomizationRequests(t, site.Config())
	res, err := (&activities.Sites{Driver: kube}).Observe(ctx, activities.ObserveInput{Sites: sites})
	if err != nil {
		t.Fatal(err)
	}
	after := kustomizationRequests(t, site.Config())
	if lists, gets := after["LIST"]-before["LIST"], after["GET"]-before["GET"]; lists != 1 || gets != 0 {
		t.Errorf("a round of %d sites on one context made %g lists and %g gets of Kustomizations; want 1 list", len(sites), lists, gets)
	}
	got := res.States[0]
	if got.Revision != alone.Revision || got.Ready != alone.Ready || !got.Reachable || got.Revision == "" {
		t.Errorf("site a in a round: %+v; alone: %+v", got, alone)
	}
	for _, st := range res.States[1 : len(sites)-1] {
		if !st.Reachable || st.Ready {
			t.Errorf("suspended site %s: %+v", st.Site, st)
		}
	}
	if gone := res.States[len(sites)-1]; gone.Reachable || gone.Message != `context "a": Kustomization flux-system/nope not found` {
		t.Errorf("a site without its Kustomization: %+v", gone)
	}
}

// kustomizationRequests reads the API server's count of requests on Kustomizations, by verb.
func kustomizationRequests(t *testing.T, cfg *rest.Config) map[string]float64 {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(cfg.Host + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s: %s", resp.Status, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="kustomizations"`) {
			continue
		}
		i := strings.Index(line, `verb="`)
		sp := strings.LastIndexByte(line, ' ')
		if i < 0 || sp < 0 {
			continue
		}
		verb := line[i+6:]
		verb = verb[:strings.IndexByte(verb, '"')]
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err == nil {
			out[verb] += v
		}
	}
	return out
}

// TestKubeSiteOfSeveralKustomizations: a site applied by a root Kustomization and a child that
// depends on it (real Flux). A commit both apply converges the site; a commit the child fails
// to build fails the site at that commit, in words that name the child, although the root
// applied it and is Ready.
func TestKubeSiteOfSeveralKustomizations(t *testing.T) {
	files := app("1")
	files["child/kustomization.yaml"] = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cm.yaml]\n"
	files["child/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child\ndata:\n  version: \"1\"\n"
	gs := gittest.NewServer(t, "fleet", files, "sites/a")
	lab := kubelab.Start(t, kubelab.Options{GitURL: gs.URL, Sites: []string{"a"}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	child, err := kubelab.DecodeYAML([]byte(`apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: child, namespace: flux-system}
spec:
  interval: 10m
  path: ./child
  prune: true
  wait: true
  timeout: 30s
  targetNamespace: default
  dependsOn: [{name: apps}]
  sourceRef: {kind: GitRepository, name: fleet}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Sites["a"].Apply(ctx, false, child...); err != nil {
		t.Fatal(err)
	}
	kube := deploy.NewKube(lab.Kubeconfig)
	site := rollout.Site{Name: "a", Cluster: &rollout.Cluster{Context: "a", Kustomizations: []string{"flux-system/apps", "flux-system/child"}}}
	if err := kube.Validate(ctx, site); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	wrong := site
	wrong.Cluster = &rollout.Cluster{Context: "a", Kustomizations: []string{"flux-system/apps", "flux-system/kid"}}
	if err := kube.Validate(ctx, wrong); err == nil || !strings.Contains(err.Error(), "site a: cluster.kustomizations: context \"a\": Kustomization flux-system/kid not found") {
		t.Errorf("Validate of a missing child: %v", err)
	}
	// until observes the site (batched with a second site, so ObserveSites lists) until done
	// says it is settled, and returns that state.
	until := func(what string, done func(rollout.SiteState) bool) rollout.SiteState {
		t.Helper()
		other := rollout.Site{Name: "b", Cluster: &rollout.Cluster{Context: "a", Kustomization: "flux-system/apps"}}
		var last rollout.SiteState
		for ctx.Err() == nil {
			states, err := kube.ObserveSites(ctx, []rollout.Site{site, other})
			if err != nil {
				t.Fatal(err)
			}
			if last = states[0]; done(last) {
				return last
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
		t.Fatalf("%s: the site is at %+v", what, last)
		return last
	}
	seed := gs.Head(t, "sites/a")
	until("the seed", func(st rollout.SiteState) bool { return st.Converged(seed) })

	good := gs.CommitOn(t, "sites/a", "v2", map[string]string{"deploy/app.yaml": strings.Replace(files["deploy/app.yaml"], `"1"`, `"2"`, 1),
		"child/cm.yaml": strings.Replace(files["child/cm.yaml"], `"1"`, `"2"`, 1)})
	if err := kube.RequestReconcile(ctx, site); err != nil {
		t.Fatal(err)
	}
	st := until("v2", func(st rollout.SiteState) bool { return st.Converged(good) || st.FluxFailed(good) })
	if !st.Converged(good) || !strings.Contains(st.Message, "flux-system/apps, flux-system/child: ") {
		t.Errorf("v2: %+v", st)
	}

	bad := gs.CommitOn(t, "sites/a", "v3, the child's kustomization names a missing file", map[string]string{
		"deploy/app.yaml":          strings.Replace(files["deploy/app.yaml"], `"1"`, `"3"`, 1),
		"child/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cm.yaml, missing.yaml]\n"})
	if err := kube.RequestReconcile(ctx, site); err != nil {
		t.Fatal(err)
	}
	st = until("v3", func(st rollout.SiteState) bool { return st.FluxFailed(bad) })
	if st.Converged(bad) || !strings.HasPrefix(st.Message, "Kustomization flux-system/child: ") || !strings.Contains(st.Message, "missing.yaml") {
		t.Errorf("v3: %+v", st)
	}
	root, err := kube.Observe(ctx, rollout.Site{Name: "a", Cluster: &rollout.Cluster{Context: "a", Kustomization: "flux-system/apps"}})
	if err != nil || !root.Converged(bad) {
		t.Errorf("the root Kustomization alone: %+v, %v; want it at v3 and Ready", root, err)
	}
}
