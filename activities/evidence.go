package activities

import (
	"context"
	"fmt"
	"path"
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
