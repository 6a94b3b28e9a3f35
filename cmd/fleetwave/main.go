// Command fleetwave moves one commit of a fleet repo through the sites of a fleet, wave by
// wave, with Temporal workflows. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if err != errSilent {
			fmt.Fprintln(os.Stderr, "fleetwave:", err)
		}
		os.Exit(exitCode(err))
	}
}

// Exit codes, one rule for every command (README.md, "Exit codes"): 0 ok; 1 the thing checked is bad (a
// rollout that ended other than Succeeded, an invalid plan, a degraded site, a failed check);
// 2 the command could not run (a usage error, or Temporal, git or a cluster unreachable).
const (
	exitBad       = 1
	exitCannotRun = 2
)

// errSilent is returned by commands that already printed why the thing they checked is bad.
var errSilent = fmt.Errorf("failed")

// cannotRun is an error that makes the command exit 2: it could not do its job.
type cannotRun struct{ err error }

func (e *cannotRun) Error() string { return e.err.Error() }
func (e *cannotRun) Unwrap() error { return e.err }

// usageError is a command line the command cannot take; it says the command's usage line.
type usageError struct {
	err error
	cmd *cobra.Command
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%v\nUsage: %s\nRun '%s --help' for more.", e.err, e.cmd.UseLine(), e.cmd.CommandPath())
}
func (e *usageError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var cr *cannotRun
	var ue *usageError
	if errors.As(err, &cr) || errors.As(err, &ue) {
		return exitCannotRun
	}
	return exitBad
}

// Run runs the fleetwave command line with args, writing to stdout and stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && cmd != nil && isUsage(err) {
		return &usageError{err: err, cmd: cmd}
	}
	return err
}

// badUsage is a command line a command found it cannot take (flags that do not go together,
// a value out of its set); Run adds the usage line.
type badUsage struct{ msg string }

func (e *badUsage) Error() string { return e.msg }

// usagef is a badUsage error.
func usagef(format string, args ...any) error { return &badUsage{msg: fmt.Sprintf(format, args...)} }

// isUsage tells cobra's own errors about the command line (unknown commands and flags, wrong
// arguments, a missing required flag) from the errors of a command that ran.
func isUsage(err error) bool {
	var ue *usageError
	if errors.As(err, &ue) {
		return false
	}
	var bu *badUsage
	if errors.As(err, &bu) {
		return true
	}
	msg := err.Error()
	for _, prefix := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "required flag(s)", "bad flag syntax"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

type globals struct {
	stdout, stderr io.Writer
	logLevel       string
	logFormat      string
	// temporal is how client commands and serve reach Temporal (withTemporal's flags).
	temporal temporalConn
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "fleetwave",
		Short:         "Staged multi-site GitOps releases with Temporal",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text (key=value) or json (one object a line)")
	// The commands that talk to a Temporal cluster take its connection flags.
	clients := append(newControlCmds(g), newVoteCmds(g)...)
	clients = append(clients, newListCmd(g), newServeCmd(g), newStartCmd(g), newStatusCmd(g), newCheckCmd(g), newReportCmd(g))
	for _, c := range clients {
		root.AddCommand(withTemporal(g, c))
	}
	root.AddCommand(
		newDevCmd(g),
		newRehearseCmd(g),
		newRehearseWorkerCmd(g),
		newPlanCmd(g),
		newSitesCmd(g),
		newPolicyCmd(g),
		newVersionCmd(g),
	)
	return root
}
