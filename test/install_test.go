//go:build e2e

package test

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/test/kubelab"
)

// kustomizeBuild builds the kustomization in dir, as `kubectl kustomize dir` does.
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	data, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubelab.DecodeYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestInstallManifests builds deploy/install and deploy/install/site with kustomize and
// applies them to a real kube-apiserver running Flux:
//   - fleetwave's own manifests by server-side apply, dry run, with strict field validation;
//     the Deployment's arguments are accepted by the binary;
//   - the site kit for real, its GitRepository pointed at the test's git server: Flux applies
//     the site's branch through it, and a token of its ServiceAccount lets `fleetwave plan
//     validate --kubeconfig` read the site's Kustomization.
func TestInstallManifests(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildFleetwave(t)
	files := map[string]string{
		"deploy/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lab-app}\ndata: {version: \"1\"}\n",
		"apps/app.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: podinfo, namespace: default}\ndata: {version: \"1\"}\n",
	}
	gs := gittest.NewServer(t, "fleet", files, "sites/ams-1")
	lab := kubelab.Start(t, kubelab.Options{GitURL: gs.URL, Sites: []string{"ams-1"}})
	site := lab.Sites["ams-1"]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// fleetwave itself.
	objs := kustomizeBuild(t, filepath.Join(root, "deploy", "install"))
	kinds := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		kinds[o.GetKind()] = o
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} {
		if kinds[k] == nil {
			t.Errorf("deploy/install builds no %s", k)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if err := site.Apply(ctx, false, kinds["Namespace"]); err != nil {
		t.Fatal(err)
	}
	if err := site.Apply(ctx, true, objs...); err != nil {
		t.Fatalf("server-side apply (dry run) of deploy/install: %v", err)
	}
	dep := kinds["Deployment"].Object
	if n, _, _ := unstructured.NestedFieldNoCopy(dep, "spec", "replicas"); fmt.Sprint(n) != "2" {
		t.Errorf("Deployment replicas %v, want 2", n)
	}
	if v, _, _ := unstructured.NestedBool(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot"); !v {
		t.Error("the pod may run as root")
	}
	containers, _, _ := unstructured.NestedSlice(dep, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	if v, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !v {
		t.Error("the root filesystem is writable")
	}
	if path, _, _ := unstructured.NestedString(c, "readinessProbe", "httpGet", "path"); path != "/healthz" {
		t.Errorf("readiness probe on %q, want /healthz", path)
	}
	// The binary takes the Deployment's arguments ($(VAR) is set from the ConfigMap).
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	for i, a := range args {
		args[i] = regexp.MustCompile(`\$\([A-Z_]+\)`).ReplaceAllString(a, "x")
	}
	if out, err := exec.Command(bin, append(args, "--help")...).CombinedOutput(); err != nil {
		t.Errorf("fleetwave %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	// The site kit, its GitRepository on the test's git server.
	kit := kustomizeBuild(t, filepath.Join(root, "deploy", "install", "site"))
	for _, o := range kit {
		if o.GetKind() == "GitRepository" {
			if err := unstructured.SetNestedField(o.Object, gs.URL, "spec", "url"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := site.Apply(ctx, false, kit...); err != nil {
		t.Fatalf("server-side apply of deploy/install/site: %v", err)
	}
	if err := site.WaitSynced(ctx); err != nil {
		t.Fatalf("Flux with deploy/install/site/flux-sync.yaml: %v", err)
	}
	k := site.GetKustomization(t)
	applied, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
	if !strings.Contains(applied, gs.Seed) || !strings.HasPrefix(applied, "sites/ams-1@") {
		t.Errorf("the Kustomization applied %q, want sites/ams-1 at %s", applied, gs.Seed)
	}
	cs, err := kubernetes.NewForConfig(site.Config())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "podinfo", metav1.GetOptions{}); err != nil {
		t.Errorf("the site kit's Kustomization did not apply ./apps: %v", err)
	}

	// fleetwave as the kit's ServiceAccount: the plan checked against the site.
	token := validateAsServiceAccount(t, ctx, bin, lab, cs, "flux-system/apps")
	// Its rights end there: it cannot read Secrets.
	saCfg := site.Config()
	saCfg.BearerToken, saCfg.CertData, saCfg.KeyData = token, nil, nil
	saCS, err := kubernetes.NewForConfig(saCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saCS.CoreV1().Secrets("flux-system").List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the kit's ServiceAccount can list Secrets")
	}
}

// validateAsServiceAccount makes a token of the ServiceAccount flux-system/fleetwave (what a
// kubeconfig for the site would hold) and runs `fleetwave plan validate --kubeconfig` with it,
// for a plan of the one site ams-1 gated on kustomization; it returns the token.
func validateAsServiceAccount(t *testing.T, ctx context.Context, bin string, lab *kubelab.Lab, cs *kubernetes.Clientset, kustomization string) string {
	t.Helper()
	tok, err := cs.CoreV1().ServiceAccounts("flux-system").CreateToken(ctx, "fleetwave",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := lab.WriteKubeconfig(kubeconfig, "fleetwave", tok.Status.Token); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(dir, "fleetwave.yaml")
	writeFile(t, plan, `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: kit}
spec:
  sites:
    - {name: ams-1, cluster: {context: ams-1, kustomization: `+kustomization+`}}
  waves:
    - {name: all}
`)
	if out, err := exec.Command(bin, "plan", "validate", "--kubeconfig", kubeconfig, plan).CombinedOutput(); err != nil {
		t.Errorf("fleetwave plan validate as the ServiceAccount fleetwave: %v\n%s", err, out)
	}
	return tok.Status.Token
}

func ptrTo[T any](v T) *T { return &v }

// TestStaticBinary builds the binary as the Dockerfile and .ko.yaml do (CGO_ENABLED=0) and
// checks that it needs no dynamic loader, so it runs on distroless/static, and that it runs.
// No image registry is reachable here, so the image itself is not built.
func TestStaticBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fleetwave")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=test", "-o", bin, "./cmd/fleetwave") // -trimpath and -s -w as well in the image; they change nothing here but the build cache
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%s)", p.Type)
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test") {
		t.Errorf("fleetwave version: %v\n%s", err, out)
	}
}

// bootstrapSync is what `flux bootstrap --path=clusters/ams-1` commits as gotk-sync.yaml: Flux
// following main and applying the site's path, itself included.
const bootstrapSync = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m0s
  ref:
    branch: main
  url: %s
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 10m0s
  path: ./clusters/ams-1
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
`

// TestAdoptBootstrappedSite follows docs/adopting.md on a real kube-apiserver with Flux: a site
// that Flux manages from main, its own sync included, as `flux bootstrap` leaves it, is moved
// onto its branch sites/ams-1 by a commit in git (the branch pushed before main). Then a push
// to main no longer reaches it, a fleetwave promotion does, and fleetwave's ServiceAccount
// reads its Kustomization.
func TestAdoptBootstrappedSite(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildFleetwave(t)
	gs := gittest.NewServer(t, "fleet", map[string]string{"deploy/lab.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lab-app}\n"}, "sites/ams-1")
	lab := kubelab.Start(t, kubelab.Options{GitURL: gs.URL, Sites: []string{"ams-1"}})
	site := lab.Sites["ams-1"]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs, err := kubernetes.NewForConfig(site.Config())
	if err != nil {
		t.Fatal(err)
	}
	podinfo := func(v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: podinfo, namespace: default}\ndata: {version: \"" + v + "\"}\n"
	}

	// The site as bootstrap leaves it.
	sync := fmt.Sprintf(bootstrapSync, gs.URL)
	bootstrapped := gs.CommitOn(t, "main", "flux bootstrap", map[string]string{
		"clusters/ams-1/flux-system/gotk-sync.yaml":     sync,
		"clusters/ams-1/flux-system/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [gotk-sync.yaml]\n",
		"clusters/ams-1/podinfo.yaml":                   podinfo("1"),
	})
	objs, err := kubelab.DecodeYAML([]byte(sync))
	if err != nil {
		t.Fatal(err)
	}
	if err := site.Apply(ctx, false, objs...); err != nil {
		t.Fatal(err)
	}
	waitSelfSync(t, ctx, site, "main@sha1:"+bootstrapped)

	// Steps 1 and 2: the switch committed, the site branch pushed before main.
	clone := t.TempDir()
	gittest.Git(t, clone, "clone", "-q", gs.URL, ".")
	file := filepath.Join(clone, "clusters", "ams-1", "flux-system", "gotk-sync.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, strings.Replace(string(data), "branch: main", "branch: sites/ams-1", 1))
	gittest.Git(t, clone, "commit", "-qam", "Sites follow their fleetwave branches")
	gittest.Git(t, clone, "push", "-q", "origin", "HEAD:refs/heads/sites/ams-1")
	gittest.Git(t, clone, "push", "-q", "origin", "HEAD:main")
	switched := gittest.Git(t, clone, "rev-parse", "HEAD")
	reconcileSource(t, ctx, site)
	waitSelfSync(t, ctx, site, "sites/ams-1@sha1:"+switched)

	// A push to main reaches no site any more.
	next := gs.CommitOn(t, "main", "podinfo 2", map[string]string{"clusters/ams-1/podinfo.yaml": podinfo("2")})
	reconcileSource(t, ctx, site)
	waitSelfSync(t, ctx, site, "sites/ams-1@sha1:"+switched)
	if v := configMapVersion(t, ctx, cs); v != "1" {
		t.Fatalf("podinfo %s after a push to main, want 1 until fleetwave promotes it", v)
	}

	// A fleetwave promotion of that commit does.
	repo, err := gitops.Open(ctx, gs.URL)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := repo.Promote(ctx, gitops.PromoteRequest{Rollout: "rollout/fleet/" + next[:12], Wave: "canary", Source: next,
		Targets: []gitops.Target{{Site: "ams-1", Branch: "sites/ams-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	reconcileSource(t, ctx, site)
	waitSelfSync(t, ctx, site, "sites/ams-1@sha1:"+changes[0].Commit)
	if v := configMapVersion(t, ctx, cs); v != "2" {
		t.Errorf("podinfo %s after the promotion, want 2", v)
	}

	// Step 4: fleetwave's rights, and the plan checked against the site as fleetwave.
	var rights []*unstructured.Unstructured
	for _, f := range []string{"site-rbac.yaml", "serviceaccount.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "deploy", "install", "site", f))
		if err != nil {
			t.Fatal(err)
		}
		o, err := kubelab.DecodeYAML(data)
		if err != nil {
			t.Fatal(err)
		}
		rights = append(rights, o...)
	}
	if err := site.Apply(ctx, false, rights...); err != nil {
		t.Fatal(err)
	}
	validateAsServiceAccount(t, ctx, bin, lab, cs, "flux-system/flux-system")
}

var (
	gitRepositories = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	kustomizations  = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
)

// reconcileSource asks Flux to fetch the GitRepository flux-system now, as
// `flux reconcile source git flux-system` does, and waits until it has.
func reconcileSource(t *testing.T, ctx context.Context, site *kubelab.Site) {
	t.Helper()
	token := time.Now().Format(time.RFC3339Nano)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, token)
	repos := site.Dynamic().Resource(gitRepositories).Namespace("flux-system")
	if _, err := repos.Patch(ctx, "flux-system", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		g, err := repos.Get(ctx, "flux-system", metav1.GetOptions{})
		if err == nil {
			if handled, _, _ := unstructured.NestedString(g.Object, "status", "lastHandledReconcileAt"); handled == token {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GitRepository flux-system did not handle the reconcile request %s", token)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitSelfSync waits until the Kustomization flux-system is Ready at its generation, has
// applied revision, and its source has fetched exactly that.
func waitSelfSync(t *testing.T, ctx context.Context, site *kubelab.Site, revision string) {
	t.Helper()
	var applied, fetched, ready string
	for {
		k, kerr := site.Dynamic().Resource(kustomizations).Namespace("flux-system").Get(ctx, "flux-system", metav1.GetOptions{})
		g, gerr := site.Dynamic().Resource(gitRepositories).Namespace("flux-system").Get(ctx, "flux-system", metav1.GetOptions{})
		if kerr == nil && gerr == nil {
			applied, _, _ = unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
			fetched, _, _ = unstructured.NestedString(g.Object, "status", "artifact", "revision")
			ready = ""
			conds, _, _ := unstructured.NestedSlice(k.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
					ready = fmt.Sprint(m["status"])
				}
			}
			observed, _, _ := unstructured.NestedInt64(k.Object, "status", "observedGeneration")
			if applied == revision && fetched == revision && ready == "True" && observed == k.GetGeneration() {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Kustomization flux-system: applied %q, source fetched %q, Ready %q; want %s", applied, fetched, ready, revision)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func configMapVersion(t *testing.T, ctx context.Context, cs *kubernetes.Clientset) string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "podinfo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data["version"]
}
