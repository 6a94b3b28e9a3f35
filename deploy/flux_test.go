package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
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
