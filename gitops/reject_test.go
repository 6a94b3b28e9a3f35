package gitops

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushRejectedByTheServer: a pre-receive hook (a protected branch, a policy of the git
// host) refuses the push. That is permanent: Promote returns ErrPushRejected with the server's
// own words at once, instead of a retry that can never succeed, and nothing is written.
func TestPushRejectedByTheServer(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sites/ams-1", "sites/fra-1")
	src := f.commitOn(t, "main", "Bump web to 2", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
	r := f.open(t)
	hook := filepath.Join(f.dir, "hooks", "pre-receive")
	script := "#!/bin/sh\necho 'sites/* are protected: changes need a merge request' >&2\nexit 1\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	before := f.head(t, "sites/ams-1")
	_, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "canary", Source: src, Targets: targets("ams-1", "fra-1")})
	if !errors.Is(err, ErrPushRejected) {
		t.Fatalf("err = %v, want ErrPushRejected", err)
	}
	if errors.Is(err, ErrNonFastForward) {
		t.Errorf("err %v also says non-fast-forward: it would be retried", err)
	}
	if !strings.Contains(err.Error(), "sites/* are protected: changes need a merge request") {
		t.Errorf("err %q lacks the server's message", err)
	}
	if f.head(t, "sites/ams-1") != before {
		t.Error("sites/ams-1 was written")
	}
}
