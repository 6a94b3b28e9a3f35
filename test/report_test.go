//go:build e2e

package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/internal/schematest"
)

// reportCLI runs `fleetwave report ID -o format` with links to ui and returns what it printed,
// checking the JSON form against its schema.
func reportCLI(t *testing.T, bin, temporal, ui, id, format string) []byte {
	t.Helper()
	cmd := exec.Command(bin, "report", id, "-o", format, "--ui-url", ui)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+temporal)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fleetwave report %s -o %s: %v\n%s", id, format, err, stderr.String())
	}
	if format == "json" {
		schematest.Check(t, "Report", out)
	}
	return out
}

// decodeReport decodes a report's JSON form.
func decodeReport(t *testing.T, data []byte) report.Report {
	t.Helper()
	var r report.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report: %v\n%s", err, data)
	}
	return r
}

// checkEvidence finds, with the git CLI, the commit of the evidence branch of the bare repo
// that holds the report of rollout id, checks what it holds, and returns its Markdown and
// JSON files.
func checkEvidence(t *testing.T, bare, branch, id string) (md, js []byte) {
	t.Helper()
	var commit string
	for _, line := range strings.Split(git(t, bare, "log", branch, "--format=%H %(trailers:key=Fleetwave-Rollout,valueonly,separator=%x2C)"), "\n") {
		if h, rid, ok := strings.Cut(line, " "); ok && rid == id {
			commit = h
		}
	}
	if commit == "" {
		t.Fatalf("no commit of %s on %s has the trailer Fleetwave-Rollout: %s:\n%s", bare, branch, id, git(t, bare, "log", branch, "--format=%H %s"))
	}
	files := strings.Fields(git(t, bare, "show", "--name-only", "--format=", commit))
	if len(files) != 2 || filepath.Ext(files[0]) != ".json" || filepath.Ext(files[1]) != ".md" ||
		strings.TrimSuffix(files[0], ".json") != strings.TrimSuffix(files[1], ".md") || !strings.HasPrefix(files[0], "evidence/demo/") {
		t.Fatalf("evidence commit %s of %s changes %v, want evidence/demo/<date>-<sha>.md and .json", commit, id, files)
	}
	md = []byte(git(t, bare, "show", commit+":"+files[1]) + "\n")
	js = []byte(git(t, bare, "show", commit+":"+files[0]) + "\n")
	return md, js
}

// listItems decodes the items of a list object (RolloutList, SiteList) printed with -o json.
func listItems[T any](out string) ([]T, error) {
	var list struct {
		Items []T `json:"items"`
	}
	err := json.Unmarshal([]byte(out), &list)
	return list.Items, err
}
