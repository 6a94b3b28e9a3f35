package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

func newStartCmd(g *globals) *cobra.Command {
	var fleet, repo, output, sourceBranch, taskQueue string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "start COMMIT",
		Short: "Submit a commit for rollout (a no-op if that commit's rollout exists)",
		Long: `start hands COMMIT to the coordinator of --fleet, which rolls it out when no other rollout of
the fleet is promoting (the plan's onNewCommit says whether a newer commit supersedes the
running rollout or waits for it). COMMIT is a full commit hash, or, with --repo, anything git
can resolve there (a branch, a short hash). It prints the rollout's ID.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if fleet == "" {
				return usagef("--fleet is required")
			}
			commit := strings.ToLower(args[0])
			if !fullSHA.MatchString(commit) {
				if repo == "" {
					return fmt.Errorf("%q is not a full commit hash: give the 40-character hash, or --repo to resolve it", commit)
				}
				r, err := gitops.Open(ctx, repo, gitOptions(serveOptions{})...)
				if err != nil {
					return err
				}
				info, err := r.Commit(commit)
				if err != nil {
					return err
				}
				commit = info.SHA
			}
			fw, tc, err := g.dialRollouts(ctx)
			if err != nil {
				return err
			}
			defer tc.Close()
			if taskQueue != "" {
				fw = workflows.NewClient(tc, taskQueue)
			}
			id, err := fw.Submit(ctx, workflows.FleetInput{Fleet: fleet, SourceBranch: sourceBranch}, commit,
				rollout.Trigger{Via: rollout.TriggerCLI, By: localUser()})
			if err != nil {
				return err
			}
			if wait {
				wctx, cancel := withTimeout(ctx, timeout)
				defer cancel()
				err := waitForRollout(wctx, tc, fleet, commit)
				if err != nil && ctx.Err() == nil && timedOut(wctx, err) {
					err = fmt.Errorf("--timeout %s passed before rollout %s ended", timeout, id)
				}
				st, serr := fw.Status(ctx, id)
				if serr == nil {
					if perr := printStatus(g.stdout, output, st); perr != nil {
						return perr
					}
				}
				return err
			}
			if done, err := writeJSON(g.stdout, output, rolloutRef{TypeMeta: rollout.Meta(kindRolloutRef), Rollout: id, Fleet: fleet, Commit: commit}); done || err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, id)
			return nil
		},
	}
	cmd.Flags().StringVar(&fleet, "fleet", "", "fleet name (as in rollout IDs)")
	cmd.Flags().StringVar(&sourceBranch, "source-branch", "main", "the fleet's source branch (used when this starts the fleet's coordinator)")
	cmd.Flags().StringVar(&repo, "repo", "", "fleet repo URL, to resolve COMMIT when it is not a full hash")
	cmd.Flags().StringVar(&taskQueue, "task-queue", "", `task queue of the fleet's workers, when serve was given --task-queue (default "fleetwave/<fleet>")`)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the rollout to end and print its status; exit 1 if it failed")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait: stop waiting after this long, print the status and exit 1 (0: no limit)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	var output string
	var watch bool
	var interval, timeout time.Duration
	cmd := &cobra.Command{
		Use: "status ROLLOUT",
		Long: `status shows a rollout: its waves, sites, verdicts and measurements, and what it waits for.
ROLLOUT is its ID (rollout/<fleet>/<commit>), <fleet>/<commit prefix>, or a commit prefix (4 hex
digits or more) that names one rollout. It exits 1 when the rollout ended other than Succeeded.`,
		Short: "Show a rollout: waves, sites, verdicts, measurements, and what it waits for",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			fw, tc, err := g.dialRollouts(ctx)
			if err != nil {
				return err
			}
			defer tc.Close()
			id, err := fw.Find(ctx, args[0])
			if err != nil {
				return err
			}
			if watch {
				return watchStatus(ctx, g, fw, id, interval, timeout)
			}
			st, err := fw.Status(ctx, id)
			if err != nil {
				return err
			}
			// Who sent each vote, beside whom it names (best effort: the status stands without).
			_ = fw.VoteCallers(ctx, &st)
			if err := printStatus(g.stdout, output, st); err != nil {
				return err
			}
			if st.State.Done() && st.State != rollout.StateSucceeded {
				return errSilent // the status says how it ended
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.ValidArgsFunction = completeRollouts(g, false)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the rollout until it ends: redraws in place on a terminal, prints changes line by line otherwise")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "refresh interval of --watch")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --watch: stop following after this long and exit 1 (0: no limit)")
	return cmd
}

func printStatus(w io.Writer, output string, st rollout.Status) error {
	if done, err := writeJSON(w, output, st.Object()); done || err != nil {
		return err
	}
	fmt.Fprintf(w, "%s  %s  %s %q\n", st.Rollout, st.State, rollout.Short(st.Commit), st.Subject)
	if st.Simulated {
		fmt.Fprintln(w, deploy.SimulatedNote)
	}
	if !st.StartedAt.IsZero() {
		end := st.FinishedAt
		if end.IsZero() {
			end = time.Now()
		}
		fmt.Fprintf(w, "started %s, %s\n", st.StartedAt.UTC().Format(time.RFC3339), end.Sub(st.StartedAt).Round(time.Second))
	}
	if st.Cause != "" {
		fmt.Fprintf(w, "cause: %s\n", st.Cause)
	}
	if st.Reason != "" {
		fmt.Fprintf(w, "reason: %s\n", st.Reason)
	}
	for _, l := range st.Waiting {
		fmt.Fprintf(w, "waiting: %s\n", l)
	}
	for _, c := range st.Controls {
		line := fmt.Sprintf("%s by %s at %s", c.Action, cmp.Or(c.By, "?"), c.At.UTC().Format(time.TimeOnly))
		if c.Reason != "" {
			line += ": " + c.Reason
		}
		fmt.Fprintln(w, line)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, wv := range st.Waves {
		line := fmt.Sprintf("wave %s\t%s", wv.Name, wv.State)
		switch {
		case wv.State == rollout.StateBaking && !wv.BakeUntil.IsZero():
			line += "\tbaking until " + wv.BakeUntil.UTC().Format(time.TimeOnly)
		case wv.Message != "":
			line += "\t" + wv.Message
		}
		fmt.Fprintln(tw, line)
		if a := wv.Approval; a != nil {
			fmt.Fprintf(tw, "  approval\t%s\tapprovers %s\n", a.Summary(), strings.Join(a.Approvers, ", "))
			for _, u := range a.Unresolved {
				fmt.Fprintf(tw, "  approval\t%s\n", u)
			}
			for _, v := range a.Votes {
				fmt.Fprintf(tw, "  vote\t%s at %s\n", v, v.At.UTC().Format(time.RFC3339))
			}
		}
		for _, s := range wv.Sites {
			commit := rollout.Short(s.Promotion)
			if s.Revert != "" {
				commit += " reverted by " + rollout.Short(s.Revert)
			}
			detail := s.Message
			if detail == "" {
				detail = formatChecks(s.Checks)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Name, s.Verdict, commit, strings.ReplaceAll(detail, "\t", " "))
		}
	}
	return tw.Flush()
}

// waitForRollout waits until the rollout exists (it may be queued) and then until it ends. A
// commit the fleet skipped because a newer one superseded it is an error.
func waitForRollout(ctx context.Context, tc client.Client, fleet, commit string) error {
	id := workflows.RolloutID(fleet, commit)
	for {
		if _, err := tc.DescribeWorkflow(ctx, id, ""); err == nil {
			break
		}
		if v, err := tc.QueryWorkflow(ctx, workflows.FleetID(fleet), "", workflows.QueryFleet); err == nil {
			var st workflows.FleetState
			if v.Get(&st) == nil && slices.Contains(st.Superseded, commit) {
				return fmt.Errorf("%s was superseded by a newer commit before its rollout started", rollout.Short(commit))
			}
			for _, r := range st.Refused {
				if r.Commit == commit {
					return fmt.Errorf("refused by fleet %s: %s", fleet, r.Reason)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return tc.GetWorkflow(ctx, id, "").Get(ctx, nil)
}

// timedOut says whether err ended a wait on ctx because ctx's deadline came. Temporal answers a
// long poll with DeadlineExceeded a little before the caller's deadline (it keeps a margin to
// answer in time), so ctx.Err() alone can still be nil when the wait gives up.
func timedOut(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	if _, ok := ctx.Deadline(); !ok {
		return false
	}
	var de *serviceerror.DeadlineExceeded
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &de) || status.Code(err) == codes.DeadlineExceeded
}

// withTimeout is ctx with a deadline d from now; d <= 0 leaves ctx without one.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
