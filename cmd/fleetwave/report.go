package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/workflows"
)

// envCommitURL is the commit URL template of the fleet repo's web view, for report links.
const envCommitURL = "FLEETWAVE_COMMIT_URL"

func newReportCmd(g *globals) *cobra.Command {
	var output, out string
	var links report.Links
	cmd := &cobra.Command{
		Use:   "report ROLLOUT [-o md|json|html] [--out FILE]",
		Short: "Write the evidence of a rollout: commit, trigger, policy decisions, approvals, promotions, gates, reverts, controls",
		Long: `report writes the evidence of one rollout, built from its workflow history: the commit and what
started it, the plan's blob hash, and for every wave the policy decisions, the approval and its
votes, each site's promotion commit, when it converged, its health gates (each check's first,
worst and last measurement against its threshold), the verdicts and the reverts with their
reasons; then every pause, resume, abort and rollback, and how the rollout ended. It works for
closed rollouts too, and gives the same report after any number of worker restarts.

-o md (the default) is Markdown, json the Report object of docs/report.md, html one
self-contained page with a timeline of the waves, to attach to a change ticket. --out writes a
file instead of standard output, in the format its extension names unless -o says otherwise.
ROLLOUT is its ID, <fleet>/<commit prefix>, or a commit prefix.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("output") && out != "" {
				if ext := strings.TrimPrefix(filepath.Ext(out), "."); ext == "md" || ext == "json" || ext == "html" {
					output = ext
				}
			}
			switch output {
			case "md", "json", "html":
			default:
				return usagef("unknown output format %q: use md, json or html", output)
			}
			ctx := cmd.Context()
			tc, namespace, err := g.temporal.dial(ctx, nil, nil, "")
			if err != nil {
				return err
			}
			defer tc.Close()
			fw := workflows.NewClient(tc, "")
			id, err := fw.Find(ctx, args[0])
			if err != nil {
				return err
			}
			links.UI = cmp.Or(links.UI, os.Getenv(envTemporalUI))
			links.Commit = cmp.Or(links.Commit, os.Getenv(envCommitURL))
			r, err := fw.Report(ctx, namespace, id, links)
			if err != nil {
				return err
			}
			data, err := renderReport(r, output)
			if err != nil {
				return err
			}
			if out == "" {
				_, err := g.stdout.Write(data)
				return err
			}
			return writeFileAtomic(out, data)
		},
	}
	cmd.ValidArgsFunction = completeRollouts(g, false)
	cmd.Flags().StringVarP(&output, "output", "o", "md", "format: md, json or html")
	cmd.Flags().StringVar(&out, "out", "", "write the report to this file (its extension picks the format unless -o is given)")
	cmd.Flags().StringVar(&links.UI, "ui-url", "", "the Temporal UI's address, for links to the workflow (default $"+envTemporalUI+")")
	cmd.Flags().StringVar(&links.Commit, "commit-url", "", `the fleet repo's commit address with {sha}, for links to commits, e.g. "https://github.com/acme/fleet/commit/{sha}" (default $`+envCommitURL+")")
	return cmd
}

// renderReport writes the report in format md, json or html.
func renderReport(r report.Report, format string) ([]byte, error) {
	switch format {
	case "json":
		return report.JSON(r)
	case "html":
		return report.HTML(r)
	case "md":
		return []byte(report.Markdown(r)), nil
	}
	return nil, fmt.Errorf("unknown report format %q", format)
}

// writeFileAtomic writes the file whole or not at all: a temporary file beside it, renamed.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
