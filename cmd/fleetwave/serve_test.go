package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/gitops/gitserver"
	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/rollout"
)

// TestServeNeedsEverySiteContext: serve --driver kube with a kubeconfig lacking a site's
// context stops at start, naming the site and the field, before it connects to anything.
func TestServeNeedsEverySiteContext(t *testing.T) {
	gs, err := gitserver.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gs.Init("fleet")
	if err != nil {
		t.Fatal(err)
	}
	plan := `apiVersion: fleetwave.dev/v1alpha1
kind: RolloutPlan
metadata: {name: demo}
spec:
  sites:
    - {name: ams-1}
    - {name: fra-1, cluster: {context: prod-fra}}
  waves:
    - {name: all}
`
	if _, err := gitserver.Seed(dir, map[string]string{"fleetwave.yaml": plan}, "sites/ams-1", "sites/fra-1"); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: ams-1, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: fleetwave, user: {token: t}}]
contexts: [{name: ams-1, context: {cluster: ams-1, user: fleetwave}}]
current-context: ams-1
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = Run(context.Background(), []string{"serve", "--repo", "file://" + dir, "--kubeconfig", kubeconfig, "--address", "127.0.0.1:1"}, &out, &out)
	if err == nil {
		t.Fatal("serve started without a context for site fra-1")
	}
	for _, want := range []string{`site fra-1: cluster.context: context "prod-fra" not found in kubeconfig`, "give --kubeconfig"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "ams-1") {
		t.Errorf("error %q names site ams-1, whose context exists", err)
	}
}

// TestServeRefusesAKeyThatCannotSign: serve --signing-key with a key protected by a passphrase
// (or no key at all) stops at start, naming the file, before it connects to anything.
func TestServeRefusesAKeyThatCannotSign(t *testing.T) {
	gs, err := gitserver.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gs.Init("fleet")
	if err != nil {
		t.Fatal(err)
	}
	plan := "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: demo}\nspec:\n  sites: [{name: a}]\n  waves: [{name: all}]\n"
	if _, err := gitserver.Seed(dir, map[string]string{"fleetwave.yaml": plan}, "sites/a"); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	for file, want := range map[string]string{key: "signing key " + key + ": the key is protected by a passphrase", key + ".gone": "signing key: open " + key + ".gone"} {
		var out bytes.Buffer
		err = Run(context.Background(), []string{"serve", "--driver", "sim", "--repo", "file://" + dir, "--signing-key", file, "--address", "127.0.0.1:1"}, &out, &out)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("serve --signing-key %s: %v, want %q", filepath.Base(file), err, want)
		}
	}
}

// TestServeRefusesTwoFleetsWithOneName: two repos whose plans give one fleet name would share a
// task queue, and one's worker would take the other's tasks: serve stops at start and names
// both. Flag combinations that cannot work are refused too.
func TestServeRefusesTwoFleetsWithOneName(t *testing.T) {
	root := t.TempDir()
	gs, err := gitserver.New(root)
	if err != nil {
		t.Fatal(err)
	}
	plan := "apiVersion: fleetwave.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: shops}\nspec:\n  sites: [{name: a}]\n  waves: [{name: all}]\n"
	var urls []string
	for _, name := range []string{"east", "west"} {
		dir, err := gs.Init(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gitserver.Seed(dir, map[string]string{"fleetwave.yaml": plan}, "sites/a"); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "file://"+dir)
	}
	var out bytes.Buffer
	err = Run(context.Background(), []string{"serve", "--driver", "sim", "--repo", urls[0], "--repo", urls[1], "--address", "127.0.0.1:1"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), `are both fleet "shops": each fleet needs its own name`) ||
		!strings.Contains(err.Error(), urls[0]) || !strings.Contains(err.Error(), urls[1]) {
		t.Errorf("two fleets named shops: %v", err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--repo", urls[0], "--repo", urls[1], "--fleet", "x"}, "--fleet and --task-queue name one fleet"},
		{[]string{"--repo", urls[0], "--config", "fleets.yaml"}, "--config and --repo"},
		{nil, "--repo or --config"},
	} {
		err := Run(context.Background(), append([]string{"serve", "--driver", "sim", "--address", "127.0.0.1:1"}, tt.args...), &out, &out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("serve %v: %v, want %q", tt.args, err, tt.want)
		}
	}
}

func TestEvidenceBranchOK(t *testing.T) {
	plan := &rollout.Plan{SourceBranch: "main", SiteBranch: "sites/{site}", Sites: []rollout.Site{{Name: "ams-1"}}}
	for b, want := range map[string]string{
		"evidence":    "",
		"audit/2026":  "",
		"main":        "source branch",
		"sites/ams-1": "branch of site ams-1",
		"bad..name":   "not a branch name",
		"":            "not a branch name",
	} {
		err := evidenceBranchOK(b, plan)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("evidenceBranchOK(%q) = %v, want %q", b, err, want)
		}
	}
}

// TestReportPageRefuses: a report page exists only for a link signed for that rollout of this
// fleet (the e2e Slack test reads a real one).
func TestReportPageRefuses(t *testing.T) {
	n := newNode(slog.New(slog.DiscardHandler), nil, nil, "demo", "", "main", nil)
	n.reportKey = report.LinkKey("signing-secret")
	id := "rollout/demo/0123456789ab"
	other := "rollout/beta/0123456789ab"
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	link := func(key []byte, id string, exp time.Time) string {
		return "/reports/" + id + ".md?exp=" + strconv.FormatInt(exp.Unix(), 10) + "&sig=" + report.LinkSignature(key, id, exp)
	}
	for _, path := range []string{
		"/reports/" + id + ".md",
		link(report.LinkKey("another secret"), id, exp),
		strings.Replace(link(n.reportKey, "rollout/demo/ffffffffffff", exp), "ffffffffffff", "0123456789ab", 1),
		link(n.reportKey, other, exp),
		strings.Replace(link(n.reportKey, id, exp), ".md?", ".txt?", 1),
		link(n.reportKey, id, time.Now().Add(-time.Second)), // expired
		strings.Replace(link(n.reportKey, id, exp), "exp=", "exp=9", 1),
	} {
		rec := httptest.NewRecorder()
		n.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		}
	}
	// Without a Slack signing secret there is no key, and no page.
	n.reportKey = nil
	rec := httptest.NewRecorder()
	n.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, link(nil, id, exp), nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET without a key: %d, want 404", rec.Code)
	}
}

func TestReportLinkTTL(t *testing.T) {
	for v, want := range map[string]time.Duration{"": defaultReportLinkTTL, "720h": 720 * time.Hour, "90s": 90 * time.Second} {
		t.Setenv(envReportLinkTTL, v)
		if got, err := reportLinkTTL(); err != nil || got != want {
			t.Errorf("%s=%q: %s, %v; want %s", envReportLinkTTL, v, got, err, want)
		}
	}
	for _, v := range []string{"90 days", "0", "-1h"} {
		t.Setenv(envReportLinkTTL, v)
		if _, err := reportLinkTTL(); err == nil || !strings.Contains(err.Error(), envReportLinkTTL) || !strings.Contains(err.Error(), v) {
			t.Errorf("%s=%q: %v, want an error naming the setting and the value", envReportLinkTTL, v, err)
		}
	}
}
