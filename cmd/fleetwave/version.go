package main

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/temporal"

	"github.com/fleetwave/fleetwave/rollout"
)

// version and commit are set at build time (`make build`: -ldflags -X main.version=... -X
// main.commit=...); a plain `go build` or `go install` falls back to what the Go toolchain
// recorded (the module version, the VCS revision).
var (
	version string
	commit  string
)

// buildInfo is what `fleetwave version` prints.
type buildInfo struct {
	rollout.TypeMeta
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	Go          string `json:"go"`
	TemporalSDK string `json:"temporalSDK"`
	Platform    string `json:"platform"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{TypeMeta: rollout.Meta(kindVersion), Version: version, Commit: commit, Go: runtime.Version(), TemporalSDK: temporal.SDKVersion,
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; b.Version == "" && v != "" && v != "(devel)" {
			b.Version = v
		}
		modified := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = cmp.Or(b.Commit, s.Value)
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && b.Commit != "" && commit == "" {
			b.Commit += " (modified)"
		}
	}
	b.Version = cmp.Or(b.Version, "dev")
	b.Commit = cmp.Or(b.Commit, "unknown")
	return b
}

func newVersionCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print fleetwave's version, commit, and its Go and Temporal SDK versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b := readBuildInfo()
			if done, err := writeJSON(g.stdout, output, b); done || err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "fleetwave %s\ncommit: %s\ngo: %s (%s)\ntemporal sdk: %s\n", b.Version, b.Commit, b.Go, b.Platform, b.TemporalSDK)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
