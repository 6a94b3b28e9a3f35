package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTemporalConnPrecedence: a flag wins over the environment, which wins over the profile
// of the Temporal CLI's config file; an unknown profile is an error; TLS flags turn TLS on.
func TestTemporalConnPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "temporal.toml")
	if err := os.WriteFile(file, []byte(`
[profile.default]
address = "file-default:7233"
namespace = "file-ns"

[profile.prod]
address = "prod.example:7233"
namespace = "prod-ns"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "TEMPORAL_TLS",
		"TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_SERVER_NAME"} {
		t.Setenv(k, "")
		_ = os.Unsetenv(k)
	}
	t.Setenv("TEMPORAL_CONFIG_FILE", file)

	opts, err := temporalConn{}.options()
	if err != nil || opts.HostPort != "file-default:7233" || opts.Namespace != "file-ns" {
		t.Fatalf("config file's default profile: %q %q %v", opts.HostPort, opts.Namespace, err)
	}
	opts, err = temporalConn{profile: "prod"}.options()
	if err != nil || opts.HostPort != "prod.example:7233" || opts.Namespace != "prod-ns" {
		t.Fatalf("--env prod: %q %q %v", opts.HostPort, opts.Namespace, err)
	}
	if _, err := (temporalConn{profile: "staging"}).options(); err == nil {
		t.Fatal("--env naming a profile the file lacks: no error")
	}

	t.Setenv("TEMPORAL_NAMESPACE", "env-ns")
	opts, err = temporalConn{profile: "prod"}.options()
	if err != nil || opts.HostPort != "prod.example:7233" || opts.Namespace != "env-ns" {
		t.Fatalf("environment over the profile: %q %q %v", opts.HostPort, opts.Namespace, err)
	}
	opts, err = temporalConn{profile: "prod", namespace: "flag-ns", address: "flag:7233"}.options()
	if err != nil || opts.HostPort != "flag:7233" || opts.Namespace != "flag-ns" {
		t.Fatalf("flags over the environment: %q %q %v", opts.HostPort, opts.Namespace, err)
	}
	if opts.ConnectionOptions.TLS != nil || opts.Credentials != nil {
		t.Fatal("TLS or credentials without being asked for")
	}
	opts, err = temporalConn{apiKey: "k"}.options()
	if err != nil || opts.Credentials == nil || opts.ConnectionOptions.TLS == nil {
		t.Fatalf("--api-key: credentials %v, TLS %v, %v", opts.Credentials, opts.ConnectionOptions.TLS, err)
	}
	opts, err = temporalConn{tlsServerName: "temporal.internal"}.options()
	if err != nil || opts.ConnectionOptions.TLS == nil || opts.ConnectionOptions.TLS.ServerName != "temporal.internal" {
		t.Fatalf("--tls-server-name: %+v %v", opts.ConnectionOptions.TLS, err)
	}
	if _, err := (temporalConn{tlsCA: filepath.Join(dir, "missing.pem")}).options(); err == nil {
		t.Fatal("--tls-ca-path naming no file: no error")
	}

	_ = os.Unsetenv("TEMPORAL_CONFIG_FILE")
	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(dir, "none.toml"))
	_ = os.Unsetenv("TEMPORAL_NAMESPACE")
	opts, err = temporalConn{}.options()
	if err != nil || opts.HostPort != "localhost:7233" || opts.Namespace != "default" {
		t.Fatalf("no configuration at all: %q %q %v", opts.HostPort, opts.Namespace, err)
	}
}

// TestLogFormat: --log-format json writes one JSON object a line; anything else but text is
// refused.
func TestLogFormat(t *testing.T) {
	var out strings.Builder
	log, err := newLogger(&globals{stderr: &out, logLevel: "info", logFormat: "json"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("commit submitted", "rollout", "rollout/demo/abc")
	var line map[string]any
	if err := json.Unmarshal([]byte(out.String()), &line); err != nil || line["msg"] != "commit submitted" || line["rollout"] != "rollout/demo/abc" {
		t.Errorf("json log line %q: %v", out.String(), err)
	}
	if _, err := newLogger(&globals{stderr: &out, logLevel: "info", logFormat: "yaml"}); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("--log-format yaml: %v", err)
	}
}
