package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/spf13/cobra"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/policy"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with the fleet's Rego policies"}
	cmd.AddCommand(&cobra.Command{
		Use:   "test [DIR]",
		Short: "Run the Rego unit tests (test_ rules) of the policy folder, like opa test (default " + rollout.PolicyDir + ")",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := rollout.PolicyDir
			if len(args) == 1 {
				dir = args[0]
			}
			return runPolicyTest(cmd.Context(), g, dir)
		},
	})
	return cmd
}

// readPolicyDir reads every .rego file under dir; a missing dir has none.
func readPolicyDir(dir string) ([]rollout.PolicyFile, error) {
	var files []rollout.PolicyFile
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !policy.IsPolicyFile(path) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files = append(files, rollout.PolicyFile{Path: path, Source: string(data)})
		return nil
	})
	if os.IsNotExist(err) {
		return nil, nil
	}
	return files, err
}

func runPolicyTest(ctx context.Context, g *globals, dir string) error {
	files, err := readPolicyDir(dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fmt.Fprintf(g.stderr, "%s: no .rego files\n", dir)
		return errSilent
	}
	mods, err := policy.Parse(files)
	if err != nil {
		fmt.Fprintln(g.stderr, err)
		return errSilent
	}
	ch, err := tester.NewRunner().SetCompiler(policy.NewCompiler()).SetModules(mods).SetTimeout(policy.EvalTimeout).RunTests(ctx, nil)
	if err != nil {
		fmt.Fprintln(g.stderr, err)
		return errSilent
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b *tester.Result) int {
		return strings.Compare(fmt.Sprintf("%s:%06d", a.Location.File, a.Location.Row), fmt.Sprintf("%s:%06d", b.Location.File, b.Location.Row))
	})
	passed := 0
	for _, r := range results {
		where := fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
		switch {
		case r.Error != nil:
			fmt.Fprintf(g.stdout, "ERROR %s %s.%s: %v\n", where, r.Package, r.Name, r.Error)
		case r.Fail:
			fmt.Fprintf(g.stdout, "FAIL  %s %s.%s (%s)\n", where, r.Package, r.Name, r.Duration.Round(time.Microsecond))
		case r.Skip:
			fmt.Fprintf(g.stdout, "SKIP  %s %s.%s\n", where, r.Package, r.Name)
			passed++
		default:
			fmt.Fprintf(g.stdout, "PASS  %s %s.%s (%s)\n", where, r.Package, r.Name, r.Duration.Round(time.Microsecond))
			passed++
		}
	}
	if len(results) == 0 {
		fmt.Fprintf(g.stdout, "%s: no test_ rules\n", dir)
		return nil
	}
	fmt.Fprintf(g.stdout, "%d/%d passed\n", passed, len(results))
	if passed != len(results) {
		return errSilent
	}
	return nil
}
