package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

func newControlCmds(g *globals) []*cobra.Command {
	specs := []struct{ action, short string }{
		{workflows.UpdatePause, "Hold a rollout: no new batch or wave starts (health checks and automatic reverts go on)"},
		{workflows.UpdateResume, "Release a paused rollout"},
		{workflows.UpdateAbort, "Stop a rollout at the next safe point; promoted sites stay as they are"},
		{workflows.UpdateRollback, "Stop a rollout and revert every site it promoted (break-glass)"},
	}
	var cmds []*cobra.Command
	for _, s := range specs {
		var reason string
		cmd := updateCmd(g, s.action, s.short, "who acts (default: the local user name)",
			func(ctx context.Context, fw *workflows.Client, id, by string) (any, string, error) {
				res, err := fw.Control(ctx, id, s.action, workflows.ControlInput{By: by, Reason: reason})
				return controlResult{TypeMeta: rollout.Meta(kindControlResult), Rollout: id, ControlResult: res}, res.Message, err
			})
		cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the rollout's status and history")
		cmd.ValidArgsFunction = completeRollouts(g, true)
		cmds = append(cmds, cmd)
	}
	return cmds
}

func newVoteCmds(g *globals) []*cobra.Command {
	specs := []struct{ action, short string }{
		{workflows.UpdateApprove, "Approve the wave of a rollout that waits for approval"},
		{workflows.UpdateReject, "Reject the wave of a rollout that waits for approval; the rollout stops"},
	}
	var cmds []*cobra.Command
	for _, s := range specs {
		var wave, comment string
		cmd := updateCmd(g, s.action, s.short, "the approver's Slack user ID, as the plan lists approvers (default: the local user name)",
			func(ctx context.Context, fw *workflows.Client, id, by string) (any, string, error) {
				res, err := fw.Vote(ctx, id, s.action, workflows.VoteInput{Wave: wave, By: by, Via: workflows.ViaCLI, Comment: comment})
				return voteResult{TypeMeta: rollout.Meta(kindVoteResult), Rollout: id, VoteResult: res}, res.Message, err
			})
		cmd.Long = s.short + `.

The vote counts when --as names an approver of the wave in the plan (a Slack user ID, or a
member of a listed user group): the same rule as the Slack buttons. The rollout refuses a
vote on a wave that does not wait for approval, a second vote and a vote after the timeout.`
		cmd.Flags().StringVar(&wave, "wave", "", "the wave voted on (default: the wave waiting for approval)")
		cmd.ValidArgsFunction = completeRollouts(g, true)
		_ = cmd.RegisterFlagCompletionFunc("wave", completeWaves(g))
		cmd.Flags().StringVar(&comment, "comment", "", "why, recorded with the vote")
		cmds = append(cmds, cmd)
	}
	return cmds
}

// updateCmd is a command that sends one Update to a rollout, as --as, and prints its answer
// (its message, or the whole result with -o json).
func updateCmd(g *globals, action, short, asHelp string, send func(ctx context.Context, fw *workflows.Client, id, by string) (any, string, error)) *cobra.Command {
	var as, output string
	cmd := &cobra.Command{
		Use:   action + " ROLLOUT",
		Short: short,
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
			res, msg, err := send(ctx, fw, id, cmp.Or(as, localUser()))
			if err != nil {
				return err
			}
			if done, err := writeJSON(g.stdout, output, res); done || err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: %s\n", id, msg)
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", "", asHelp)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func newListCmd(g *globals) *cobra.Command {
	var f workflows.ListFilter
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List rollouts, newest first, with their state, wave, commit and age",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			fw, tc, err := g.dialRollouts(ctx)
			if err != nil {
				return err
			}
			defer tc.Close()
			list, err := fw.List(ctx, f)
			if err != nil {
				return err
			}
			if done, err := writeJSON(g.stdout, output, rolloutList{TypeMeta: rollout.Meta(rollout.KindRolloutList), Items: list}); done || err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLLOUT\tSTATE\tWAVE\tCOMMIT\tAGE")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Rollout, s.State, s.Wave, rollout.Short(s.Commit), time.Since(s.Started).Round(time.Second))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&f.Fleet, "fleet", "", "only this fleet")
	cmd.Flags().StringVar(&f.State, "state", "", "only this state (Promoting, Paused, Succeeded, Failed, Aborted, RolledBack, ...)")
	cmd.Flags().StringVar(&f.Commit, "commit", "", "only commits starting with this")
	cmd.Flags().IntVar(&f.Limit, "limit", 50, "at most this many")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// watchStatus prints the status every interval until the rollout ends. On a terminal it
// redraws in place; otherwise it prints a line whenever something changed.
func watchStatus(ctx context.Context, g *globals, fw *workflows.Client, id string, interval, timeout time.Duration) error {
	wctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	tty := isTerminal(g.stdout)
	var last []string
	for {
		st, err := fw.Status(ctx, id)
		if err != nil {
			return err
		}
		if tty {
			var b strings.Builder
			if err := printWatch(&b, st); err != nil {
				return err
			}
			fmt.Fprint(g.stdout, "\x1b[H\x1b[2J"+b.String())
		} else {
			lines := statusLines(st)
			for _, l := range lines {
				if !slices.Contains(last, l) {
					fmt.Fprintf(g.stdout, "%s %s\n", time.Now().UTC().Format(time.TimeOnly), l)
				}
			}
			last = lines
		}
		if st.State.Done() {
			if st.State != rollout.StateSucceeded {
				return errSilent
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wctx.Done():
			return fmt.Errorf("--timeout %s passed; rollout %s is still %s", timeout, id, st.State)
		case <-time.After(interval):
		}
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// statusLines are the facts a non-terminal watch reports as they change.
func statusLines(st rollout.Status) []string {
	lines := []string{fmt.Sprintf("rollout %s %s", st.Rollout, st.State)}
	for _, w := range st.Waves {
		lines = append(lines, fmt.Sprintf("wave %s %s %s", w.Name, w.State, progress(w, 0)))
		for _, s := range w.Sites {
			lines = append(lines, fmt.Sprintf("site %s %s %s", s.Name, s.Verdict, s.Message))
		}
	}
	if st.Reason != "" {
		lines = append(lines, "reason: "+st.Reason)
	}
	for _, l := range st.Waiting {
		lines = append(lines, "waiting: "+l)
	}
	return lines
}

// progress draws "[####....] 2/4 healthy" for a wave; width 0 leaves the bar out.
func progress(w rollout.WaveStatus, width int) string {
	done := 0
	for _, s := range w.Sites {
		if s.Verdict == rollout.VerdictHealthy || s.Verdict == rollout.VerdictReverted {
			done++
		}
	}
	count := fmt.Sprintf("%d/%d healthy", done, len(w.Sites))
	if width == 0 || len(w.Sites) == 0 {
		return count
	}
	n := done * width / len(w.Sites)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] " + count
}

// printWatch is the terminal view: one line per wave with a progress bar and what it waits on,
// then the sites.
func printWatch(b *strings.Builder, st rollout.Status) error {
	fmt.Fprintf(b, "%s  %s  %s %q\n", st.Rollout, st.State, rollout.Short(st.Commit), st.Subject)
	if st.Simulated {
		fmt.Fprintln(b, deploy.SimulatedNote)
	}
	for _, l := range st.Waiting {
		fmt.Fprintf(b, "waiting: %s\n", l)
	}
	if st.Reason != "" {
		fmt.Fprintf(b, "reason: %s\n", st.Reason)
	}
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	for _, w := range st.Waves {
		gate := ""
		switch w.State {
		case rollout.StateBaking:
			gate = "baking until " + w.BakeUntil.UTC().Format(time.TimeOnly)
		case rollout.StateConverging:
			gate = "waiting for sites to apply the commit"
		case rollout.StatePending:
			if st.State == rollout.StatePaused && st.Wave == w.Name {
				gate = "paused"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.Name, w.State, progress(w, 20), gate)
		for _, s := range w.Sites {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Name, s.Verdict, rollout.Short(s.Promotion), s.Message)
		}
	}
	return tw.Flush()
}
