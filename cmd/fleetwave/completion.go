package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// completionTimeout bounds what a shell waits for Temporal while completing.
const completionTimeout = 3 * time.Second

// completeRollouts completes the ROLLOUT argument with the IDs of the rollouts Temporal lists
// (the 100 newest; only running ones when running), each described by its state and commit.
func completeRollouts(g *globals, running bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return complete(g, cmd, func(ctx context.Context, fw *workflows.Client) ([]cobra.Completion, error) {
			list, err := fw.List(ctx, workflows.ListFilter{Running: running, Limit: 100})
			var out []cobra.Completion
			for _, s := range list {
				if strings.HasPrefix(s.Rollout, toComplete) {
					out = append(out, cobra.CompletionWithDesc(s.Rollout, s.State+" "+rollout.Short(s.Commit)))
				}
			}
			return out, err
		})
	}
}

// completeWaves completes --wave with the waves of the rollout named by the argument: the
// ones waiting for approval first.
func completeWaves(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		out, directive := complete(g, cmd, func(ctx context.Context, fw *workflows.Client) ([]cobra.Completion, error) {
			id, err := fw.Find(ctx, args[0])
			if err != nil {
				return nil, err
			}
			st, err := fw.Status(ctx, id)
			waves := slices.Clone(st.Waves)
			slices.SortStableFunc(waves, func(a, b rollout.WaveStatus) int {
				return boolRank(a.State == rollout.StateApproval) - boolRank(b.State == rollout.StateApproval)
			})
			var out []cobra.Completion
			for _, w := range waves {
				if strings.HasPrefix(w.Name, toComplete) {
					out = append(out, cobra.CompletionWithDesc(w.Name, string(w.State)))
				}
			}
			return out, err
		})
		return out, directive | cobra.ShellCompDirectiveKeepOrder
	}
}

// complete asks Temporal for completions, within completionTimeout; when it cannot, the shell
// is told so and offered nothing.
func complete(g *globals, cmd *cobra.Command, fn func(context.Context, *workflows.Client) ([]cobra.Completion, error)) ([]cobra.Completion, cobra.ShellCompDirective) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	fw, tc, err := g.dialRollouts(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	defer tc.Close()
	out, err := fn(ctx, fw)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func boolRank(b bool) int {
	if b {
		return 0
	}
	return 1
}
