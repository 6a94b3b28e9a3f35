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
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

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

	// fleetwave as the kit's ServiceAccount: a token for it (what a kubeconfig for the
	// site would hold), and the plan checked against the site.
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
    - {name: ams-1, cluster: {context: ams-1, kustomization: flux-system/apps}}
  waves:
    - {name: all}
`)
	if out, err := exec.Command(bin, "plan", "validate", "--kubeconfig", kubeconfig, plan).CombinedOutput(); err != nil {
		t.Errorf("fleetwave plan validate as the kit's ServiceAccount: %v\n%s", err, out)
	}
	// Its rights end there: it cannot read Secrets.
	saCfg := site.Config()
	saCfg.BearerToken, saCfg.CertData, saCfg.KeyData = tok.Status.Token, nil, nil
	saCS, err := kubernetes.NewForConfig(saCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saCS.CoreV1().Secrets("flux-system").List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the kit's ServiceAccount can list Secrets")
	}
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
