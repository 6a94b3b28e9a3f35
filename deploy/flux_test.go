package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/fleetwave/fleetwave/rollout"
)

const ours = "1111111111111111111111111111111111111111"

func loadKustomization(t *testing.T, name string) Kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "kustomizations", name))
	if err != nil {
		t.Fatal(err)
	}
	// Decode as client-go does (integers stay int64), from the YAML's JSON form.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	k, err := KustomizationFrom(u)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKustomizationVerdicts(t *testing.T) {
	tests := []struct {
		file               string
		converged, failed  bool
		ready, reconciling bool
		stalled, suspended bool
		message            string
	}{
		{file: "ready.yaml", converged: true, ready: true, message: "ReconciliationSucceeded: Applied revision"},
		{file: "old-revision.yaml", ready: true},
		{file: "reconciling.yaml", reconciling: true, message: "Progressing"},
		{file: "build-failed.yaml", failed: true, message: "BuildFailed: kustomize build failed"},
		{file: "apply-failed-retrying.yaml", failed: true, message: "ReconciliationFailed: ConfigMap/default/app dry-run failed"},
		{file: "stalled.yaml", failed: true, stalled: true, message: "InvalidPath: path ./apps not found"},
		{file: "old-generation.yaml", reconciling: true},
		{file: "new.yaml", reconciling: true, message: "no Ready condition yet"},
		{file: "dependency-not-ready.yaml", reconciling: true, message: "DependencyNotReady: dependency 'flux-system/apps' is not ready"},
		{file: "suspended.yaml", converged: true, ready: true, suspended: true, message: "ReconciliationSucceeded"},
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			st := loadKustomization(t, tt.file).State("ams-1", now)
			if got := st.Converged(ours); got != tt.converged {
				t.Errorf("Converged = %v, want %v (%+v)", got, tt.converged, st)
			}
			if got := st.FluxFailed(ours); got != tt.failed {
				t.Errorf("FluxFailed = %v, want %v (%+v)", got, tt.failed, st)
			}
			if st.Ready != tt.ready || st.Reconciling != tt.reconciling || st.Stalled != tt.stalled {
				t.Errorf("ready %v reconciling %v stalled %v, want %v %v %v", st.Ready, st.Reconciling, st.Stalled, tt.ready, tt.reconciling, tt.stalled)
			}
			if !strings.Contains(st.Message, tt.message) {
				t.Errorf("message %q does not contain %q", st.Message, tt.message)
			}
			if st.Suspended != tt.suspended || (st.Suspended && st.HealthyAt(ours)) {
				t.Errorf("suspended %v (healthy %v), want %v and never healthy", st.Suspended, st.HealthyAt(ours), tt.suspended)
			}
			if !st.Reachable || st.Site != "ams-1" || !st.ObservedAt.Equal(now) {
				t.Errorf("state %+v", st)
			}
		})
	}
}

// TestRefused: a GitRepository whose Ready condition says it would not take a commit marks the
// site as Flux failing at that commit; other failures (no commit named) and a refusal of the
// commit the site already runs do not.
func TestRefused(t *testing.T) {
	sha, old := strings.Repeat("ab", 20), strings.Repeat("cd", 20)
	repo := func(status, msg string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": []any{
			map[string]any{"type": "Ready", "status": status, "reason": "InvalidCommitSignature", "message": msg}}}}}
	}
	src := SourceRef{Kind: "GitRepository", Namespace: "flux-system", Name: "fleet"}
	for _, tt := range []struct {
		name string
		u    *unstructured.Unstructured
		want bool
	}{
		{"refused", repo("False", "signature verification of commit '"+sha+"' failed: unsupported signature type: empty"), true},
		{"ready", repo("True", "stored artifact for revision 'sites/a@sha1:"+sha+"'"), false},
		{"another failure", repo("False", "failed to checkout and determine revision: unable to clone"), false},
	} {
		st := rollout.SiteState{Site: "a", Reachable: true, Ready: true, Revision: "sites/a@sha1:" + old}
		refuse(&st, src, tt.u)
		if st.FluxFailed(sha) != tt.want || st.Converged(old) != true {
			t.Errorf("%s: %+v", tt.name, st)
		}
		if tt.want && !strings.HasPrefix(st.Message, "GitRepository flux-system/fleet refused commit abababa: InvalidCommitSignature: ") {
			t.Errorf("%s: message %q", tt.name, st.Message)
		}
	}
	st := rollout.SiteState{Site: "a", Reachable: true, Ready: true, Revision: "sites/a@sha1:" + sha}
	if refuse(&st, src, repo("False", "signature verification of commit '"+sha+"' failed")); st.SourceRefused != "" {
		t.Errorf("a refusal of the commit the site runs: %+v", st)
	}
}
