//go:build e2e

package kubelab_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/test/kubelab"
)

var configMapGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// fleetFiles is a fleet repository whose ./deploy holds one ConfigMap with the given version.
func fleetFiles(version string) map[string]string {
	return map[string]string{
		"deploy/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - cm.yaml\n",
		"deploy/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  version: \"" + version + "\"\n",
	}
}

// TestLab starts two sites and checks what the harness promises on them, one subtest each, so
// that they share the cost of starting the sites.
func TestLab(t *testing.T) {
	srv := gittest.NewServer(t, "fleet", fleetFiles("1"), "sites/a", "sites/b")
	lab := kubelab.Start(t, kubelab.Options{GitURL: srv.URL, Sites: []string{"a", "b"}}) // logs its time

	t.Run("synced", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			s := lab.Sites[name]
			k := s.GetKustomization(t)
			want := "sites/" + name + "@sha1:" + srv.Seed
			if got, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision"); got != want {
				t.Errorf("site %s: lastAppliedRevision = %q, want %q", name, got, want)
			}
			if got := readyStatus(k); got != "True" {
				t.Errorf("site %s: Ready = %q, want True", name, got)
			}
			cm, err := s.Dynamic().Resource(configMapGVR).Namespace(kubelab.TargetNamespace).Get(t.Context(), "app", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("site %s: the ConfigMap Flux applied: %v", name, err)
			}
			if got, _, _ := unstructured.NestedString(cm.Object, "data", "version"); got != "1" {
				t.Errorf("site %s: ConfigMap app has version %q, want 1", name, got)
			}
		}
	})

	t.Run("restricted user", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			dyn := fleetwaveClient(t, lab.Kubeconfig, name)
			ks := dyn.Resource(kubelab.KustomizationGVR).Namespace(kubelab.Namespace)
			if _, err := ks.Get(t.Context(), kubelab.KustomizationName, metav1.GetOptions{}); err != nil {
				t.Errorf("site %s: fleetwave cannot get the Kustomization: %v", name, err)
			}
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, time.Now().Format(time.RFC3339Nano))
			if _, err := ks.Patch(t.Context(), kubelab.KustomizationName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Errorf("site %s: fleetwave cannot request a reconcile: %v", name, err)
			}
			if _, err := dyn.Resource(configMapGVR).Namespace(kubelab.TargetNamespace).List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("site %s: fleetwave listing ConfigMaps: got %v, want Forbidden", name, err)
			}
			secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
			if _, err := dyn.Resource(secrets).Namespace(kubelab.Namespace).List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("site %s: fleetwave listing Secrets: got %v, want Forbidden", name, err)
			}
		}
	})

	t.Run("reconcile request", func(t *testing.T) {
		b := lab.Sites["b"]
		head := srv.CommitOn(t, "sites/b", "version 2", fleetFiles("2"))
		began := time.Now()
		requestReconcile(t, b.Dynamic(), kubelab.GitRepositoryGVR, kubelab.GitRepositoryName)
		requestReconcile(t, b.Dynamic(), kubelab.KustomizationGVR, kubelab.KustomizationName)
		waitApplied(t, b, "sites/b@sha1:"+head)
		t.Logf("site b applied a new commit %s after the reconcile request", time.Since(began).Round(time.Millisecond))
	})

	t.Run("apiserver down and up", func(t *testing.T) {
		a, b := lab.Sites["a"], lab.Sites["b"]
		a.StopAPIServer(t)
		_, err := a.Dynamic().Resource(kubelab.KustomizationGVR).Namespace(kubelab.Namespace).Get(t.Context(), kubelab.KustomizationName, metav1.GetOptions{})
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("site a stopped: got %v, want connection refused", err)
		}
		b.GetKustomization(t) // the other site is untouched

		// A commit pushed while the site is down is applied once it is back and asked to.
		head := srv.CommitOn(t, "sites/a", "version 2", fleetFiles("2"))
		a.StartAPIServer(t)
		a.GetKustomization(t)
		began := time.Now()
		requestReconcile(t, a.Dynamic(), kubelab.GitRepositoryGVR, kubelab.GitRepositoryName)
		requestReconcile(t, a.Dynamic(), kubelab.KustomizationGVR, kubelab.KustomizationName)
		waitApplied(t, a, "sites/a@sha1:"+head)
		t.Logf("site a applied a new commit %s after its kube-apiserver came back and the reconcile request", time.Since(began).Round(time.Millisecond))
	})

	t.Run("rss", func(t *testing.T) {
		rss, err := lab.RSS()
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, name := range slices.Sorted(maps.Keys(rss)) {
			t.Logf("%-26s %4d MiB", name, rss[name]>>20)
			total += rss[name]
		}
		t.Logf("%-26s %4d MiB", "total", total>>20)
		if len(rss) != 1+3*2 {
			t.Errorf("RSS has %d processes, want 7: %v", len(rss), rss)
		}
	})
}

func TestMetrics(t *testing.T) {
	m := kubelab.StartMetrics(t, []string{"a", "b"})
	m.WaitScraped(t, "a", 0)
	m.SetErrorRatio("a", 0.2)
	m.WaitScraped(t, "a", 0.2)
	m.WaitScraped(t, "b", 0)

	if code, body := get(t, m.ProbeURL("a")); code != http.StatusOK || body != "ok" {
		t.Errorf("probe of a healthy site: %d %q, want 200 \"ok\"", code, body)
	}
	m.SetHealthy("a", false)
	if code, body := get(t, m.ProbeURL("a")); code != http.StatusServiceUnavailable || body != "unhealthy" {
		t.Errorf("probe of an unhealthy site: %d %q, want 503 \"unhealthy\"", code, body)
	}
	if code, _ := get(t, m.ProbeURL("b")); code != http.StatusOK {
		t.Errorf("probe of site b: %d, want 200", code)
	}

	m.StopPrometheus(t)
	if _, err := m.Query(t.Context(), "up"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("prometheus stopped: got %v, want connection refused", err)
	}
	m.SetErrorRatio("a", 0.5)
	m.StartPrometheus(t)
	m.WaitScraped(t, "a", 0.5)
	if rss, err := m.RSS(); err == nil {
		t.Logf("prometheus RSS %d MiB", rss>>20)
	}
}

// fleetwaveClient returns a client for the context site of kubeconfig, as fleetwave would
// load it.
func fleetwaveClient(t *testing.T, kubeconfig, site string) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: site},
	).ClientConfig()
	if err != nil {
		t.Fatalf("load %s context %s: %v", kubeconfig, site, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// requestReconcile asks Flux to reconcile flux-system/<name> now, as `flux reconcile` does.
func requestReconcile(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := dyn.Resource(gvr).Namespace(kubelab.Namespace).Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("request a reconcile of %s %s: %v", gvr.Resource, name, err)
	}
}

// waitApplied waits until the site's Kustomization is ready with lastAppliedRevision rev.
func waitApplied(t *testing.T, s *kubelab.Site, rev string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		k := s.GetKustomization(t)
		got, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
		if got == rev && readyStatus(k) == "True" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("site %s: lastAppliedRevision %q, Ready %q after 60s, want %q and True", s.Name, got, readyStatus(k), rev)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readyStatus(k *unstructured.Unstructured) string {
	conds, _, _ := unstructured.NestedSlice(k.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Ready" {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}
