//go:build e2e

package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/kubelab"
	"github.com/fleetwave/fleetwave/test/testenv"
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

// TestFluxVerifiesSignedPromotions: a site whose GitRepository verifies commits (spec.verify,
// SSH public key) applies fleetwave's signed promotion and its signed revert; an unsigned
// commit pushed to the branch is refused by real Flux, and fleetwave reports the site as
// Flux failing at that commit, naming the GitRepository and the reason.
func TestFluxVerifiesSignedPromotions(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	files := app("1")
	files["fleetwave.yaml"] = "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: demo}\nspec:\n" +
		"  sites: [{name: a, cluster: {context: a, kustomization: flux-system/apps}}]\n  waves: [{name: all}]\n"
	gs := gittest.NewServer(t, "fleet", files, "sites/a")
	lab := kubelab.Start(t, kubelab.Options{GitURL: gs.URL, Sites: []string{"a"}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	key := filepath.Join(dir, "signing")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := kubelab.DecodeYAML(fmt.Appendf(nil, "apiVersion: v1\nkind: Secret\nmetadata: {name: fleetwave-keys, namespace: flux-system}\nstringData:\n  fleetwave.sshpub: %q\n", strings.TrimSpace(string(pub))))
	if err != nil {
		t.Fatal(err)
	}
	site := lab.Sites["a"]
	if err := site.Apply(ctx, false, secret...); err != nil {
		t.Fatal(err)
	}
	if _, err := site.Dynamic().Resource(kubelab.GitRepositoryGVR).Namespace(kubelab.Namespace).Patch(ctx, kubelab.GitRepositoryName, types.MergePatchType,
		[]byte(`{"spec":{"verify":{"mode":"HEAD","secretRef":{"name":"fleetwave-keys"}}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// fleetwave check warns about a verifying site without a signing key, and checks the key.
	check := func(args ...string) string {
		out, _ := exec.Command(bin, append([]string{"check", "--repo", gs.URL, "--address", tp.Address, "--kubeconfig", lab.Kubeconfig}, args...)...).CombinedOutput()
		return string(out)
	}
	if out := check(); !strings.Contains(out, "! site a: GitRepository flux-system/fleet verifies commit signatures (spec.verify), and no signing key is set") {
		t.Errorf("fleetwave check without a key:\n%s", out)
	}
	if out := check("--signing-key", key); !strings.Contains(out, "✔ signing: "+key+" signs commits (ssh signatures)") || strings.Contains(out, "! site a") {
		t.Errorf("fleetwave check with the key:\n%s", out)
	}

	signer, err := gitops.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gitops.Open(ctx, gs.URL, gitops.WithSigner(signer))
	if err != nil {
		t.Fatal(err)
	}
	kube := deploy.NewKube(lab.Kubeconfig)
	target := rollout.Site{Name: "a", Cluster: &rollout.Cluster{Context: "a", Kustomization: site.Kustomization}}
	other := rollout.Site{Name: "b", Cluster: &rollout.Cluster{Context: "a", Kustomization: site.Kustomization}}
	until := func(what string, done func(rollout.SiteState) bool) rollout.SiteState {
		t.Helper()
		var last rollout.SiteState
		for ctx.Err() == nil {
			if err := kube.RequestReconcile(ctx, target); err != nil {
				t.Fatal(err)
			}
			states, err := kube.ObserveSites(ctx, []rollout.Site{target, other})
			if err != nil {
				t.Fatal(err)
			}
			if last = states[0]; done(last) {
				return last
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		t.Fatalf("%s: the site is at %+v", what, last)
		return last
	}
	promote := func(source string) string {
		t.Helper()
		if err := repo.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		ch, err := repo.Promote(ctx, gitops.PromoteRequest{Rollout: "rollout/demo/" + rollout.Short(source), Wave: "all", Source: source,
			Targets: []gitops.Target{{Site: "a", Branch: "sites/a"}}})
		if err != nil {
			t.Fatal(err)
		}
		return ch[0].Commit
	}

	v2 := gs.CommitOn(t, "main", "v2", map[string]string{"deploy/app.yaml": strings.Replace(files["deploy/app.yaml"], `"1"`, `"2"`, 1)})
	p2 := promote(v2)
	until("the signed promotion", func(st rollout.SiteState) bool { return st.Converged(p2) })

	unsigned := gs.CommitOn(t, "sites/a", "by hand, unsigned", map[string]string{"notes.txt": "pushed by hand\n"})
	st := until("the unsigned commit", func(st rollout.SiteState) bool { return st.FluxFailed(unsigned) })
	t.Logf("fleetwave reports: %s", st.Message)
	want := "GitRepository flux-system/fleet refused commit " + rollout.Short(unsigned) + ": "
	if !strings.HasPrefix(st.Message, want) || !strings.Contains(st.Message, "signature") || rollout.RevisionHash(st.Revision) != p2 {
		t.Errorf("the unsigned commit: %+v; want a message starting %q, at %s", st, want, rollout.Short(p2))
	}

	if err := repo.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	rv, err := repo.Revert(ctx, gitops.RevertRequest{Rollout: "rollout/demo/" + rollout.Short(v2), Reason: "test: revert through a verifying source",
		Targets: []gitops.Target{{Site: "a", Branch: "sites/a"}}})
	if err != nil || !rv[0].Created {
		t.Fatalf("revert: %+v, %v", rv, err)
	}
	until("the signed revert", func(st rollout.SiteState) bool { return st.Converged(rv[0].Commit) })
}
