//go:build e2e

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestSignedRollout: serve --signing-key (an OpenSSH key, given by FLEETWAVE_SIGNING_KEY_FILE)
// signs every promotion and the evidence commit of a rollout; the git CLI verifies each
// against an allowed-signers file, and a commit pushed by hand does not verify.
func TestSignedRollout(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "signing")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(allowed, append([]byte(`* namespaces="git" `), pub...), 0o600); err != nil {
		t.Fatal(err)
	}
	gs := gittest.NewServer(t, "fleet", faultPlan(""), siteBranches()...)
	commit := gs.CommitOn(t, "main", "app v2", map[string]string{"apps/app.yaml": "version: 2\n"})
	startServe(t, bin, tp.Address, gs.URL, []string{"FLEETWAVE_SIGNING_KEY_FILE=" + key}, "--evidence-branch", "evidence")
	tc := dialTemporal(t, tp.Address)
	id := workflows.RolloutID("demo", commit)
	if out, err := fleetwaveCLI(t, bin, tp.Address, "start", "--fleet", "demo", commit); err != nil {
		t.Fatalf("fleetwave start: %v: %s", err, out)
	}
	if err := waitRollout(t, tc, id, 2*time.Minute); err != nil {
		t.Fatalf("rollout: %v", err)
	}
	verify := func(rev string) error {
		cmd := exec.Command("git", "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", rev)
		cmd.Dir = gs.Dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("git verify-commit %s: %s", rev, out)
		}
		return err
	}
	for _, s := range sites {
		if err := verify("sites/" + s); err != nil {
			t.Errorf("the promotion on sites/%s does not verify: %v", s, err)
		}
	}
	// The evidence commit is written once the rollout ended.
	waitFor(t, "the evidence commit", func() bool { return gs.Head(t, "evidence") != "" })
	if err := verify("evidence"); err != nil {
		t.Errorf("the evidence commit does not verify: %v", err)
	}
	// A commit pushed by hand is not signed: the check is not vacuous.
	gs.CommitOn(t, "sites/sfo-1", "by hand", map[string]string{"apps/app.yaml": "version: 3\n"})
	if err := verify("sites/sfo-1"); err == nil {
		t.Error("an unsigned commit verified")
	}
}
