package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseServeConfig(t *testing.T) {
	cfg, err := ParseServeConfig("fleets.yaml", []byte(`apiVersion: fleetwave.dev/v1alpha1
kind: ServeConfig
fleets:
  - repo: https://git.example.com/acme/stores.git
    name: stores
    poll: 30s
    webhookSecretEnv: STORES_SECRET
    slackChannel: "#stores"
  - repo: https://git.example.com/acme/factories.git
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Fleets) != 2 || cfg.Fleets[0].Name != "stores" || cfg.Fleets[0].Poll != 30*time.Second || cfg.Fleets[0].WebhookSecretEnv != "STORES_SECRET" ||
		cfg.Fleets[1].Line != 9 {
		t.Errorf("parsed %+v", cfg.Fleets)
	}

	_, err = ParseServeConfig("fleets.yaml", []byte(`apiVersion: fleetwave.dev/v1alpha1
kind: ServeConfig
fleets:
  - repo: https://git.example.com/acme/a.git
    name: shops
    taskQueue: q
  - repo: https://git.example.com/acme/b.git
    name: shops
    taskQueue: q
    poll: soon
    webhookSecretEnv: "s3cr3t value"
  - name: nowhere
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`fleets.yaml:8:11: two fleets named "shops" (the other at line 4): each fleet needs its own name`,
		`fleets.yaml:9:16: task queue "q" is also the queue of the fleet at line 4`,
		`fleets.yaml:10:11: invalid duration "soon"`,
		`fleets.yaml:11:23: webhookSecretEnv "s3cr3t value" is not an environment variable name`,
		`fleets.yaml:12:9: fleet 3: repo is required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
	if _, err := ParseServeConfig("fleets.yaml", []byte("apiVersion: fleetwave.dev/v1alpha1\nkind: ServeConfig\nfleets:\n  - repo: x\n    secret: y\n")); err == nil ||
		!strings.Contains(err.Error(), "fleets.yaml:5:5") {
		t.Errorf("unknown field: %v", err)
	}
}

// FuzzParseServeConfig: whatever the file, ParseServeConfig answers a config or a PlanError,
// never panics.
func FuzzParseServeConfig(f *testing.F) {
	f.Add([]byte("apiVersion: fleetwave.dev/v1alpha1\nkind: ServeConfig\nfleets:\n  - repo: https://git.example.com/a.git\n    poll: 30s\n"))
	f.Add([]byte("kind: ServeConfig\nfleets: !00000 00\n"))
	f.Add([]byte(strings.Repeat("[", 300)))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseServeConfig("fleets.yaml", data)
		var pe *PlanError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("error %v is not a PlanError", err)
		}
		if err == nil && cfg == nil {
			t.Error("no config and no error")
		}
	})
}
