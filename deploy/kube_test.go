package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

// fakeAPI is a narrow stand-in for a site's API server: it serves one Kustomization and one
// GitRepository and records patches. The real API server and Flux are exercised by the
// end-to-end tests in test/; this pins request shapes and error handling.
type fakeAPI struct {
	token string
	mu    sync.Mutex
	// patches records "resource name: body" of every PATCH.
	patches []string
}

const kustomizationJSON = `{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization",
 "metadata":{"name":"apps","namespace":"flux-system","generation":2},
 "spec":{"sourceRef":{"kind":"GitRepository","name":"fleet"}},
 "status":{"observedGeneration":2,"lastAppliedRevision":"sites/a@sha1:c1","lastAttemptedRevision":"sites/a@sha1:c1",
  "conditions":[{"type":"Ready","status":"True","reason":"ReconciliationSucceeded","message":"Applied revision: sites/a@sha1:c1","lastTransitionTime":"2026-11-27T10:00:00Z"}]}}`

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/apps" && r.Method == http.MethodGet:
		fmt.Fprint(w, kustomizationJSON)
	case r.Method == http.MethodPatch:
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.patches = append(f.patches, r.URL.Path+": "+string(body))
		f.mu.Unlock()
		fmt.Fprint(w, kustomizationJSON)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"}`)
	}
}

func writeKubeconfig(t *testing.T, path, context, server, token string) {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: %[1]s, cluster: {server: %[2]q, insecure-skip-tls-verify: true}}]
users: [{name: %[1]s, user: {token: %[3]s}}]
contexts: [{name: %[1]s, context: {cluster: %[1]s, user: %[1]s}}]
`, context, server, token)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKubeDriver(t *testing.T) {
	a := &fakeAPI{token: "secret-token-a"}
	srvA := httptest.NewTLSServer(a)
	defer srvA.Close()
	down := httptest.NewTLSServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()

	dir := t.TempDir()
	fileA, fileB := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeKubeconfig(t, fileA, "site-a", srvA.URL, a.token)
	writeKubeconfig(t, fileB, "site-b", downURL, "secret-token-b")
	// Two files, as a KUBECONFIG list: contexts from both are found.
	k := NewKube(fileA + string(filepath.ListSeparator) + fileB)
	k.Timeout = 2 * time.Second
	ctx := context.Background()
	siteA := rollout.Site{Name: "a", Cluster: &rollout.Cluster{Context: "site-a", Kustomization: "flux-system/apps"}}

	st, err := k.Observe(ctx, siteA)
	if err != nil || !st.Reachable || !st.Converged("c1") || st.Message != "ReconciliationSucceeded: Applied revision: sites/a@sha1:c1" {
		t.Errorf("Observe a = %+v, %v", st, err)
	}
	if err := k.Validate(ctx, siteA); err != nil {
		t.Errorf("Validate a: %v", err)
	}

	// The reconcile request annotates the source, then the Kustomization, as the Flux CLI does.
	if err := k.RequestReconcile(ctx, siteA); err != nil {
		t.Fatal(err)
	}
	if len(a.patches) != 2 ||
		!strings.HasPrefix(a.patches[0], "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/fleet: ") ||
		!strings.HasPrefix(a.patches[1], "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/apps: ") {
		t.Fatalf("patches = %q", a.patches)
	}
	var patch struct {
		Metadata struct{ Annotations map[string]string }
	}
	if err := json.Unmarshal([]byte(strings.SplitN(a.patches[1], ": ", 2)[1]), &patch); err != nil {
		t.Fatal(err)
	}
	if at, err := time.Parse(time.RFC3339Nano, patch.Metadata.Annotations[ReconcileAnnotation]); err != nil || time.Since(at) > time.Minute {
		t.Errorf("annotation %q: %v", patch.Metadata.Annotations[ReconcileAnnotation], err)
	}

	// A missing Kustomization: Unknown when observing, a named field when validating.
	missing := rollout.Site{Name: "a", Cluster: &rollout.Cluster{Context: "site-a", Kustomization: "flux-system/typo"}}
	st, _ = k.Observe(ctx, missing)
	if st.Reachable || st.Message != `context "site-a": Kustomization flux-system/typo not found` {
		t.Errorf("Observe missing = %+v", st)
	}
	err = k.Validate(ctx, missing)
	if err == nil || err.Error() != `site a: cluster.kustomization: context "site-a": Kustomization flux-system/typo not found` || errors.Is(err, ErrUnreachable) {
		t.Errorf("Validate missing = %v", err)
	}

	// A context no file has.
	err = k.Validate(ctx, rollout.Site{Name: "c"})
	if err == nil || !strings.HasPrefix(err.Error(), `site c: cluster.context: context "c" not found in kubeconfig `) {
		t.Errorf("Validate unknown context = %v", err)
	}

	// An API server that is down: unreachable, and no credential in the message.
	siteB := rollout.Site{Name: "b", Cluster: &rollout.Cluster{Context: "site-b"}}
	st, _ = k.Observe(ctx, siteB)
	if st.Reachable || !strings.Contains(st.Message, "API server unreachable") {
		t.Errorf("Observe b = %+v", st)
	}
	if err := k.Validate(ctx, siteB); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Validate b = %v, want ErrUnreachable", err)
	}
	if err := k.RequestReconcile(ctx, siteB); err == nil || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("RequestReconcile b = %v", err)
	}
	for _, msg := range []string{st.Message} {
		if strings.Contains(msg, "secret-token") {
			t.Errorf("message leaks a token: %s", msg)
		}
	}

	// A wrong token: the site answers, so it is not unreachable, and the token is not echoed.
	writeKubeconfig(t, fileA, "site-a", srvA.URL, "wrong-token")
	k2 := NewKube(fileA)
	err = k2.Validate(ctx, siteA)
	if err == nil || errors.Is(err, ErrUnreachable) || strings.Contains(err.Error(), "wrong-token") || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("Validate with a wrong token = %v", err)
	}
}

func TestOverloadedAPIServerIsUnreachableNotWrong(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503,"message":"etcd is down"}`)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "k.yaml")
	writeKubeconfig(t, path, "site-c", srv.URL, "token-c")
	k := NewKube(path)
	k.Timeout = 2 * time.Second
	err := k.Validate(context.Background(), rollout.Site{Name: "c", Cluster: &rollout.Cluster{Context: "site-c"}})
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("Validate against a 503 = %v, want ErrUnreachable", err)
	}
}

func TestTarget(t *testing.T) {
	for _, tt := range []struct {
		site rollout.Site
		want string
	}{
		{rollout.Site{Name: "ams-1"}, "ams-1 [flux-system/flux-system]"},
		{rollout.Site{Name: "ams-1", Cluster: &rollout.Cluster{Kustomization: "apps/web"}}, "ams-1 [apps/web]"},
		{rollout.Site{Name: "ams-1", Cluster: &rollout.Cluster{Context: "prod", Kustomizations: []string{"flux-system/infra", "flux-system/apps"}}}, "prod [flux-system/infra flux-system/apps]"},
	} {
		ctx, refs := Target(tt.site)
		if got := fmt.Sprint(ctx, " ", refs); got != tt.want {
			t.Errorf("Target(%+v) = %s, want %s", tt.site.Cluster, got, tt.want)
		}
	}
}

// TestCombine: a site of several Kustomizations is judged by the one that holds it back.
func TestCombine(t *testing.T) {
	refs := []Ref{{"flux-system", "infra"}, {"flux-system", "apps"}}
	ready := func(rev string) rollout.SiteState {
		return rollout.SiteState{Site: "a", Reachable: true, Ready: true, Revision: "sites/a@sha1:" + rev, Attempted: "sites/a@sha1:" + rev, Message: "Applied revision"}
	}
	failed := ready("old")
	failed.Ready, failed.Attempted, failed.Message = false, "sites/a@sha1:new", "kustomize build failed"
	for _, tt := range []struct {
		name         string
		states       []rollout.SiteState
		converged    bool
		fluxFailed   bool
		wantInSubstr string
	}{
		{"both applied", []rollout.SiteState{ready("new"), ready("new")}, true, false, "flux-system/infra, flux-system/apps: Applied revision"},
		{"the child failed at the commit", []rollout.SiteState{ready("new"), failed}, false, true, "Kustomization flux-system/apps: kustomize build failed"},
		{"the child is behind", []rollout.SiteState{ready("new"), ready("old")}, false, false, "Kustomization flux-system/infra applied sites/a@sha1:new, Kustomization flux-system/apps sites/a@sha1:old"},
		{"the root is behind, the child ahead", []rollout.SiteState{ready("old"), ready("new")}, false, false, "waiting for them to agree"},
		{"one unreachable", []rollout.SiteState{ready("new"), {Site: "a", Message: "context \"a\": Kustomization flux-system/apps not found"}}, false, false, "Kustomization flux-system/apps: context"},
	} {
		got := Combine(refs, tt.states)
		if got.Converged("new") != tt.converged || got.FluxFailed("new") != tt.fluxFailed || !strings.Contains(got.Message, tt.wantInSubstr) {
			t.Errorf("%s: %+v (converged %v, failed %v)", tt.name, got, got.Converged("new"), got.FluxFailed("new"))
		}
	}
}
