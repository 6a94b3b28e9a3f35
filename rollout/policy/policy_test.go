package policy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetwave/fleetwave/rollout"
)

func input(wave string, sites ...string) rollout.PolicyInput {
	in := rollout.PolicyInput{
		Rollout: rollout.PolicyRollout{ID: "rollout/demo/abc1234", Commit: "abc1234", Author: "Ada <ada@example.com>", Message: "web 1.2"},
		Wave:    rollout.PolicyWave{Name: wave, Index: 1},
		Now:     time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC),
	}
	for _, s := range sites {
		in.Wave.Sites = append(in.Wave.Sites, rollout.PolicySite{Name: s, Labels: map[string]string{"tier": "prod"}})
	}
	return in
}

func file(path, src string) rollout.PolicyFile { return rollout.PolicyFile{Path: path, Source: src} }

func TestEval(t *testing.T) {
	files := []rollout.PolicyFile{
		file(".fleetwave/policies/prod.rego", `package fleetwave.policy

deny contains msg if {
	input.wave.name == "fleet"
	count(input.wave.sites) > 2
	msg := sprintf("wave %s: at most 2 sites, got %d", [input.wave.name, count(input.wave.sites)])
}

deny contains "no changes by robots" if startswith(input.rollout.author, "bot")
`),
		file(".fleetwave/policies/night.rego", `package fleetwave.policy

wait_until := "2026-11-27T18:00:00Z" if input.wave.name == "eu"
`),
	}
	set, err := Compile(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	deny, until, err := set.Eval(context.Background(), input("fleet", "a", "b", "c"))
	if err != nil || len(deny) != 1 || deny[0] != "wave fleet: at most 2 sites, got 3" || !until.IsZero() {
		t.Errorf("fleet: %q, %v, %v", deny, until, err)
	}
	deny, until, err = set.Eval(context.Background(), input("eu", "a"))
	if err != nil || len(deny) != 0 || !until.Equal(time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)) {
		t.Errorf("eu: %q, %v, %v", deny, until, err)
	}
	deny, until, err = set.Eval(context.Background(), input("canary", "a"))
	if err != nil || len(deny) != 0 || !until.IsZero() {
		t.Errorf("canary: %q, %v, %v", deny, until, err)
	}
}

func TestCompileErrorsNameTheFileAndLine(t *testing.T) {
	tests := []struct {
		name  string
		files []rollout.PolicyFile
		want  string
	}{
		{"syntax", []rollout.PolicyFile{file("p/a.rego", "package fleetwave.policy\n\ndeny contains msg if {\n  msg := \n}\n")}, "p/a.rego:5:1: unexpected } token"},
		{"v0 syntax is refused", []rollout.PolicyFile{file("p/a.rego", "package fleetwave.policy\n\ndeny[msg] { msg := \"x\" }\n")}, "p/a.rego:3:"},
		{"unknown function", []rollout.PolicyFile{file("p/a.rego", "package fleetwave.policy\n\ndeny contains msg if msg := nope(1)\n")}, "p/a.rego:3:"},
		{"no network from policies", []rollout.PolicyFile{file("p/a.rego", "package fleetwave.policy\n\ndeny contains msg if {\n  msg := http.send({\"method\": \"get\", \"url\": \"http://169.254.169.254/\"}).raw_body\n}\n")}, "p/a.rego:4:"},
		{"wrong package", []rollout.PolicyFile{file("p/a.rego", "package other\n\ndeny contains 1 if true\n")}, "p/a.rego:1:1: package other: policies must be in package fleetwave.policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(context.Background(), tt.files)
			var pe *Error
			if !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Compile = %v, want an error starting with %q", err, tt.want)
			}
		})
	}
	// A test file may use its own package.
	if _, err := Compile(context.Background(), []rollout.PolicyFile{file("p/a_test.rego", "package fleetwave.policy_test\n\ntest_x if true\n")}); err != nil {
		t.Errorf("test file: %v", err)
	}
}

func TestWrongTypesAreErrorsNotAllows(t *testing.T) {
	tests := []struct{ src, want string }{
		{"deny := \"no\"", `deny must be a set of strings, got the string "no"`},
		{"deny := 3", "deny must be a set of strings, got a number"},
		{"deny contains 3 if true", "deny must hold strings, got a number"},
		{"wait_until := true", "wait_until must be a set of strings, got a boolean"},
		{"wait_until := \"tomorrow\"", `wait_until must be an RFC 3339 time like 2026-11-30T08:00:00Z, got "tomorrow"`},
		{"deny contains msg if msg := sprintf(\"%d\", [to_number(\"x\")])", "evaluating deny:"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			set, err := Compile(context.Background(), []rollout.PolicyFile{file("p.rego", "package fleetwave.policy\n\n"+tt.src+"\n")})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = set.Eval(context.Background(), input("eu", "a"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Eval = %v, want %q", err, tt.want)
			}
			d := Decide(context.Background(), Request{Files: []rollout.PolicyFile{file("p.rego", "package fleetwave.policy\n\n"+tt.src+"\n")}, Input: input("eu", "a")})
			if d.Outcome != rollout.PolicyDeny || !strings.Contains(d.Deny[0], "policy evaluation failed") {
				t.Errorf("Decide = %+v, want a deny", d)
			}
		})
	}
}

func TestRunawayPolicyFailsClosed(t *testing.T) {
	evalTimeout = 200 * time.Millisecond
	defer func() { evalTimeout = EvalTimeout }()
	src := "package fleetwave.policy\n\ndeny contains msg if {\n  some i in numbers.range(1, 100000000)\n  i < 0\n  msg := \"never\"\n}\n"
	start := time.Now()
	d := Decide(context.Background(), Request{Files: []rollout.PolicyFile{file("slow.rego", src)}, Input: input("eu", "a")})
	if d.Outcome != rollout.PolicyDeny || !strings.Contains(d.Deny[0], "took longer than 200ms") {
		t.Errorf("Decide = %+v, want a deny for the time limit", d)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the time limit did not stop the evaluation: %s", took)
	}
}

func TestDecideCombinesBuiltinsAndRego(t *testing.T) {
	in := input("eu", "a")
	in.PreviousWaves = []rollout.PolicyWaveResult{{Name: "canary", FinishedAt: in.Now.Add(-30 * time.Minute)}}
	files := []rollout.PolicyFile{file("p.rego", "package fleetwave.policy\n\nwait_until := \"2026-11-27T12:10:00Z\"\n")}
	d := Decide(context.Background(), Request{MinSoak: time.Hour, Files: files, Input: in})
	// The soak (until 12:30) outlasts the Rego wait (12:10): the latest wins, both are named.
	if d.Outcome != rollout.PolicyWait || !d.WaitUntil.Equal(in.Now.Add(30*time.Minute)) || len(d.Reasons) != 2 {
		t.Errorf("Decide = %+v", d)
	}
}

func TestTimeIsTheWorkflowTime(t *testing.T) {
	set, err := Compile(context.Background(), []rollout.PolicyFile{file("p.rego", `package fleetwave.policy

deny contains msg if msg := sprintf("now is %d", [time.now_ns()])
`)})
	if err != nil {
		t.Fatal(err)
	}
	in := input("eu", "a")
	deny, _, err := set.Eval(context.Background(), in)
	if want := fmt.Sprintf("now is %d", in.Now.UnixNano()); err != nil || len(deny) != 1 || deny[0] != want {
		t.Errorf("deny = %q, %v; want %q", deny, err, want)
	}
}

// TestNoBuiltinReachesOut: every way a policy could make the worker read a URL or a file is
// refused at compile time, and no request reaches the server the policies name.
func TestNoBuiltinReachesOut(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"type":"object"}`)
	}))
	defer srv.Close()
	secret := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(secret, []byte(`{"type":"object"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	calls := map[string]string{
		"http.send":               fmt.Sprintf(`http.send({"method": "get", "url": %q}).raw_body`, srv.URL),
		"net.lookup_ip_addr":      `sprintf("%v", [net.lookup_ip_addr("localhost")])`,
		"opa.runtime":             `sprintf("%v", [opa.runtime().env])`,
		"json.match_schema http":  fmt.Sprintf(`sprintf("%%v", [json.match_schema({}, {"$ref": %q})])`, srv.URL+"/schema.json"),
		"json.verify_schema http": fmt.Sprintf(`sprintf("%%v", [json.verify_schema({"$ref": %q})])`, srv.URL+"/schema.json"),
		"json.match_schema file":  fmt.Sprintf(`sprintf("%%v", [json.match_schema({}, {"$ref": %q})])`, "file://"+secret),
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			src := "package fleetwave.policy\n\ndeny contains msg if {\n  msg := " + call + "\n}\n"
			set, err := Compile(context.Background(), []rollout.PolicyFile{file("p/a.rego", src)})
			if err == nil {
				deny, _, evalErr := set.Eval(context.Background(), input("canary", "a"))
				t.Fatalf("compiled; evaluating gave %q, %v", deny, evalErr)
			}
			if !strings.HasPrefix(err.Error(), "p/a.rego:4:") {
				t.Errorf("error %q does not point at the call", err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests left the sandbox", n)
	}
}
