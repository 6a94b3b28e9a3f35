package main

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/fleetwave/fleetwave/rollout"
)

// TestVersion: `fleetwave version` prints what the build stamped (make build: -ldflags -X), and
// the Go and Temporal SDK versions the binary was built with.
func TestVersion(t *testing.T) {
	version, commit = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	defer func() { version, commit = "", "" }()
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"version", "-o", "json"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var b buildInfo
	if err := json.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	want := buildInfo{TypeMeta: rollout.Meta(kindVersion), Version: "v1.2.3", Commit: commit, Go: runtime.Version(), TemporalSDK: temporal.SDKVersion, Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if b != want {
		t.Errorf("version -o json = %+v, want %+v", b, want)
	}
	out.Reset()
	if err := Run(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "fleetwave v1.2.3\ncommit: "+commit+"\n") || !strings.Contains(out.String(), "temporal sdk: "+temporal.SDKVersion) {
		t.Errorf("version:\n%s", out.String())
	}

	// Without the build's stamp, it still says something (the toolchain's record, or dev).
	version, commit = "", ""
	if b := readBuildInfo(); b.Version == "" || b.Commit == "" {
		t.Errorf("unstamped build: %+v", b)
	}
}
