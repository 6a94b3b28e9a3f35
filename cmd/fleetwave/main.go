// Command fleetwave moves one commit of a fleet repo through the sites of a fleet, wave by
// wave, with Temporal workflows. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
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
		os.Exit(1)
	}
}

// errSilent is returned by commands that already printed why they failed.
var errSilent = fmt.Errorf("failed")

// Run runs the fleetwave command line with args, writing to stdout and stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
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
	clients = append(clients, newListCmd(g), newServeCmd(g), newStartCmd(g), newStatusCmd(g), newCheckCmd(g))
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
