package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/rollout"
)

// Evidence writes the report of each rollout that ends onto a branch of the fleet repo (serve
// --evidence-branch), so the audit trail lives beside the change.
type Evidence struct {
	Repo EvidenceRepo
	// Branch is the branch written; "" writes nothing (the worker keeps no evidence).
	Branch string
	// Report builds the report of a rollout run from its history so far and its final status.
	Report func(ctx context.Context, id, runID string, final rollout.Status) (report.Report, error)
}

// EvidenceRepo is the git write Evidence needs (gitops.Repo).
type EvidenceRepo interface {
	WriteFiles(ctx context.Context, branch string, files map[string][]byte, message string) (gitops.Change, error)
}

// EvidenceInput is the final status of the rollout whose evidence is written.
type EvidenceInput struct {
	Status rollout.Status
}

// EvidenceResult says where the evidence went: "" when the worker keeps none.
type EvidenceResult struct {
	Branch string   `json:",omitempty"`
	Commit string   `json:",omitempty"`
	Files  []string `json:",omitempty"`
}

// EvidencePath is where a rollout's report goes on the evidence branch, without its extension:
// evidence/<fleet>/<date it ended>-<short sha>.
func EvidencePath(st rollout.Status) string {
	at := st.FinishedAt
	if at.IsZero() {
		at = st.StartedAt
	}
	return path.Join("evidence", st.Fleet, at.UTC().Format(time.DateOnly)+"-"+rollout.Short(st.Commit))
}

// WriteEvidence commits the rollout's Markdown and JSON report to the evidence branch. It is
// idempotent: the report is built from the history, which a retry sees unchanged, and a file
// already on the branch with the same content is not written again.
func (e *Evidence) WriteEvidence(ctx context.Context, in EvidenceInput) (EvidenceResult, error) {
	if e.Branch == "" || e.Repo == nil || e.Report == nil {
		return EvidenceResult{}, nil
	}
	defer keepAlive(ctx)()
	st := in.Status
	r, err := e.Report(ctx, st.Rollout, activity.GetInfo(ctx).WorkflowExecution.RunID, st)
	if err != nil {
		return EvidenceResult{}, fmt.Errorf("report of %s: %w", st.Rollout, err)
	}
	js, err := report.JSON(r)
	if err != nil {
		return EvidenceResult{}, err
	}
	base := EvidencePath(st)
	files := map[string][]byte{base + ".md": []byte(report.Markdown(r)), base + ".json": js}
	msg := fmt.Sprintf("evidence: %s %s\n\nThe report of the rollout of %s to fleet %s, which ended %s.\n\nFleetwave-Rollout: %s\n",
		st.Rollout, strings.ToLower(string(st.State)), rollout.Short(st.Commit), st.Fleet, st.State, st.Rollout)
	c, err := e.Repo.WriteFiles(ctx, e.Branch, files, msg)
	if err != nil {
		return EvidenceResult{}, gitError(err)
	}
	return EvidenceResult{Branch: e.Branch, Commit: c.Commit, Files: []string{base + ".md", base + ".json"}}, nil
}

// RollbackEvidenceInput is what the rollback of an ended rollout did (workflows.Rollback), for
// its evidence.
type RollbackEvidenceInput struct {
	// Rollout is the rollout rolled back, Ended how it had ended; Workflow is the rollback's ID.
	Rollout  string
	Ended    rollout.State
	Workflow string
	Fleet    string
	Commit   string
	// By asked for it, for Reason.
	By     string
	Reason string `json:",omitempty"`
	// StartedAt and FinishedAt are the rollback's.
	StartedAt, FinishedAt time.Time
	// Reverts are the revert commits written or found, by site; Skipped and Problems say why
	// each other site was left, as RollbackResult does.
	Reverts  map[string]string `json:",omitempty"`
	Skipped  []string          `json:",omitempty"`
	Problems []string          `json:",omitempty"`
}

// RollbackEvidencePath is where a rollback's evidence goes, without its extension:
// evidence/<fleet>/<date>-<short sha>-rollback-<time>, the date and time (UTC, hhmmss) it
// ended, so that a second rollback of one rollout does not replace the first's evidence.
func RollbackEvidencePath(in RollbackEvidenceInput) string {
	at := in.FinishedAt.UTC()
	return path.Join("evidence", in.Fleet, at.Format(time.DateOnly)+"-"+rollout.Short(in.Commit)+"-rollback-"+at.Format("150405"))
}

// WriteRollbackEvidence commits what a rollback did, Markdown and JSON, to the evidence branch,
// beside the rolled back rollout's report. Like WriteEvidence it writes nothing twice.
func (e *Evidence) WriteRollbackEvidence(ctx context.Context, in RollbackEvidenceInput) (EvidenceResult, error) {
	if e.Branch == "" || e.Repo == nil {
		return EvidenceResult{}, nil
	}
	defer keepAlive(ctx)()
	js, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return EvidenceResult{}, err
	}
	base := RollbackEvidencePath(in)
	files := map[string][]byte{base + ".md": []byte(RollbackMarkdown(in)), base + ".json": append(js, '\n')}
	msg := fmt.Sprintf("evidence: rollback of %s\n\n%s rolled back the rollout of %s to fleet %s, which had ended %s: %s reverted, %s.\n\nFleetwave-Rollout: %s\n",
		in.Rollout, in.By, rollout.Short(in.Commit), in.Fleet, in.Ended, rollout.Count(len(in.Reverts), "site"), rollout.Count(len(in.Problems), "problem"), in.Rollout)
	c, err := e.Repo.WriteFiles(ctx, e.Branch, files, msg)
	if err != nil {
		return EvidenceResult{}, gitError(err)
	}
	return EvidenceResult{Branch: e.Branch, Commit: c.Commit, Files: []string{base + ".md", base + ".json"}}, nil
}

// RollbackMarkdown is the Markdown evidence of a rollback.
func RollbackMarkdown(in RollbackEvidenceInput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Rollback of %s\n\n| | |\n|---|---|\n", in.Rollout)
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, strings.ReplaceAll(v, "|", `\|`)) }
	row("Rollout", fmt.Sprintf("`%s`, which had ended %s", in.Rollout, in.Ended))
	row("Commit", "`"+in.Commit+"`")
	row("Fleet", in.Fleet)
	row("Asked by", in.By)
	if in.Reason != "" {
		row("Reason", in.Reason)
	}
	row("Workflow", "`"+in.Workflow+"`")
	row("Started", in.StartedAt.UTC().Format(time.RFC3339))
	row("Finished", in.FinishedAt.UTC().Format(time.RFC3339))
	sites := slices.Sorted(maps.Keys(in.Reverts))
	fmt.Fprintf(&b, "\n## Reverted (%d)\n\n", len(sites))
	for _, s := range sites {
		fmt.Fprintf(&b, "- %s: revert `%s`\n", s, in.Reverts[s])
	}
	if len(sites) == 0 {
		b.WriteString("None.\n")
	}
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n## %s (%d)\n\n", title, len(items))
		for _, it := range items {
			fmt.Fprintf(&b, "- %s\n", it)
		}
	}
	list("Skipped", in.Skipped)
	list("Problems", in.Problems)
	return b.String()
}
