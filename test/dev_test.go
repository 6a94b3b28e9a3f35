//go:build e2e

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/internal/schematest"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

var devSites = []string{"ams-1", "ams-2", "fra-1", "nyc-1", "nyc-2", "sfo-1"}

// devSession is `fleetwave dev` started by a test on free ports, with a Temporal client to
// its dev server; everything stops when the test ends.
type devSession struct {
	bin, data        string
	dev              *devProc
	gitURL, temporal string
	tc               client.Client
	fw               *workflows.Client
	bare             string // the fleet repo dev serves
}

func newDevSession(t *testing.T, extra ...string) *devSession {
	t.Helper()
	s := &devSession{bin: buildFleetwave(t), data: t.TempDir()}
	s.dev = startDev(t, s.bin, s.data, freePorts(t), extra...)
	s.gitURL, s.temporal = s.dev.urls["git"], s.dev.urls["temporal"]
	tc, err := client.Dial(client.Options{HostPort: s.temporal, Logger: quietLog{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	s.tc, s.fw = tc, workflows.NewClient(tc, "")
	s.bare = filepath.Join(s.data, "git", "fleet.git")
	return s
}

type devProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	// urls is what dev printed before it was ready; seen is written by the output reader.
	urls    map[string]string
	seen    map[string]string
	mu      sync.Mutex
	stderr  strings.Builder
	started time.Duration
}

type devPorts struct{ temporal, ui, git, http int }

func freePorts(t *testing.T) devPorts {
	p := func() int {
		n, err := devtemporal.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return devPorts{p(), p(), p(), p()}
}

// startDev runs `fleetwave dev` and waits until it printed its URLs.
func startDev(t *testing.T, bin, data string, p devPorts, extra ...string) *devProc {
	t.Helper()
	args := append([]string{"dev", "--data", data, "--http", "127.0.0.1:" + strconv.Itoa(p.http),
		"--temporal-port", strconv.Itoa(p.temporal), "--ui-port", strconv.Itoa(p.ui), "--git-port", strconv.Itoa(p.git)}, extra...)
	d := &devProc{cmd: exec.Command(bin, args...), done: make(chan struct{}), seen: map[string]string{}}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b, _ := io.ReadAll(stderr)
		d.mu.Lock()
		d.stderr.Write(b)
		d.mu.Unlock()
	}()
	ready := make(chan struct{})
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
				d.mu.Lock()
				d.seen[k] = v
				n := len(d.seen)
				d.mu.Unlock()
				if k == "temporal" && n >= 4 {
					close(ready)
				}
			}
		}
		_ = d.cmd.Wait()
	}()
	t.Cleanup(func() { d.stop(t) })
	select {
	case <-ready:
		d.started = time.Since(begin)
		d.mu.Lock()
		d.urls = maps.Clone(d.seen)
		d.mu.Unlock()
	case <-d.done:
		t.Fatalf("fleetwave dev exited before it was ready:\n%s", d.log())
	case <-time.After(3 * time.Minute):
		t.Fatalf("fleetwave dev not ready after 3 minutes:\n%s", d.log())
	}
	for _, k := range []string{"ui", "git", "http", "temporal"} {
		if d.urls[k] == "" {
			t.Fatalf("fleetwave dev did not print %q: %v", k, d.urls)
		}
	}
	return d
}

func (d *devProc) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// stop sends Ctrl-C and waits for fleetwave dev (and its Temporal server) to exit.
func (d *devProc) stop(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.done:
	case <-time.After(45 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Errorf("fleetwave dev did not stop within 45s of Ctrl-C")
	}
}

func lsRemote(t *testing.T, url, ref string) string {
	out := git(t, "", "ls-remote", url, ref)
	sha, _, _ := strings.Cut(out, "\t")
	return sha
}

// clonePush commits files on main of url and pushes it; it returns the commit and the time
// the push finished.
func clonePush(t *testing.T, url, msg string, files map[string]string) (string, time.Time) {
	sha := gittest.CommitOn(t, url, "main", msg, files)
	return sha, time.Now()
}

func waitRollout(t *testing.T, tc client.Client, id string, limit time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var run client.WorkflowRun
	for {
		run = tc.GetWorkflow(ctx, id, "")
		if _, err := tc.DescribeWorkflow(ctx, id, ""); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("rollout %s never started", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return run.Get(ctx, nil)
}

func statusJSON(t *testing.T, bin, temporal, id string) rollout.Status {
	t.Helper()
	cmd := exec.Command(bin, "status", id, "-o", "json")
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+temporal)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 1) {
		t.Fatalf("fleetwave status %s: %v", id, err)
	}
	var st rollout.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	schematest.Check(t, "RolloutStatus", out)
	// The exit code rule: 1 exactly when the rollout ended other than Succeeded.
	if bad := st.State.Done() && st.State != rollout.StateSucceeded; (err != nil) != bad {
		t.Errorf("fleetwave status of a %s rollout exited with %v", st.State, err)
	}
	return st
}

func TestDevEndToEnd(t *testing.T) {
	bin := buildFleetwave(t)
	data := t.TempDir()
	ports := freePorts(t)
	dev := startDev(t, bin, data, ports)
	t.Logf("fleetwave dev ready in %s", dev.started.Round(time.Millisecond))
	gitURL := dev.urls["git"]
	tc, err := client.Dial(client.Options{HostPort: dev.urls["temporal"], Logger: quietLog{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()

	treeOf := func(ref string) string {
		return git(t, filepath.Join(data, "git", "fleet.git"), "rev-parse", ref+"^{tree}")
	}
	siteHeads := func() map[string]string {
		m := map[string]string{}
		for _, s := range devSites {
			m[s] = lsRemote(t, gitURL, "refs/heads/sites/"+s)
		}
		return m
	}
	allOn := func(commit string) {
		t.Helper()
		want := treeOf(commit)
		for s, head := range siteHeads() {
			if got := treeOf(head); got != want {
				t.Errorf("site %s runs tree %s, want %s (commit %s)", s, got, want, rollout.Short(commit))
			}
		}
	}

	// The sample rollout starts by itself and reaches every site.
	sampleHead := lsRemote(t, gitURL, "refs/heads/main")
	sampleID := workflows.RolloutID("demo", sampleHead)
	if err := waitRollout(t, tc, sampleID, 3*time.Minute); err != nil {
		t.Fatalf("sample rollout: %v\n%s", err, dev.log())
	}
	allOn(sampleHead)

	// A good commit pushed to the sample repo starts a rollout that reaches every site.
	files := map[string]string{"apps/podinfo/deployment.yaml": "kind: Deployment # podinfo 6.6.0\n"}
	good, pushed := clonePush(t, gitURL, "podinfo 6.6.0", files)
	canaryBefore := lsRemote(t, gitURL, "refs/heads/sites/ams-1")
	for lsRemote(t, gitURL, "refs/heads/sites/ams-1") == canaryBefore {
		if time.Since(pushed) > time.Minute {
			t.Fatal("the canary was not promoted within a minute of the push")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("push to canary promotion commit on the server: %s", time.Since(pushed).Round(time.Millisecond))
	goodID := workflows.RolloutID("demo", good)
	if err := waitRollout(t, tc, goodID, 3*time.Minute); err != nil {
		t.Fatalf("rollout of a good commit: %v", err)
	}
	allOn(good)
	promoted := siteHeads()
	st := statusJSON(t, bin, dev.urls["temporal"], goodID)
	if st.State != rollout.StateSucceeded || len(st.Waves) != 3 {
		t.Errorf("status -o json: %s, %d waves", st.State, len(st.Waves))
	}

	// A commit that degrades the canary: the canary is reverted, later waves are untouched.
	bad, _ := clonePush(t, gitURL, "podinfo 6.7.0 breaks the canary", map[string]string{
		"apps/podinfo/deployment.yaml": "kind: Deployment # podinfo 6.7.0\n",
		".fleetwave/sim.yaml":          "reconcileDelay: 1s\ndegraded: [ams-1]\n",
	})
	badID := workflows.RolloutID("demo", bad)
	err = waitRollout(t, tc, badID, 3*time.Minute)
	if err == nil || !strings.Contains(err.Error(), "site ams-1 degraded in wave canary") || !strings.Contains(err.Error(), "check sim failed") {
		t.Fatalf("rollout of a degrading commit: %v", err)
	}
	after := siteHeads()
	for _, s := range devSites[1:] {
		if after[s] != promoted[s] {
			t.Errorf("site %s of a later wave was touched", s)
		}
	}
	revert := after["ams-1"]
	if treeOf(revert) != treeOf(good) || !strings.HasPrefix(git(t, filepath.Join(data, "git", "fleet.git"), "log", "-1", "--format=%s", revert), `Revert "Promote `) {
		t.Errorf("canary head %s is not a revert back to %s", revert, rollout.Short(good))
	}
	reportRevertLatency(t, tc, badID)

	// Each rollout's evidence is on the sample repo's evidence branch, and equals the report
	// `fleetwave report` makes of the closed rollout from its history.
	bare := filepath.Join(data, "git", "fleet.git")
	badMD, badJSON := checkEvidence(t, bare, "evidence", badID)
	if got := reportCLI(t, bin, dev.urls["temporal"], dev.urls["ui"], badID, "json"); string(got) != string(badJSON) {
		t.Errorf("report of %s differs from its evidence:\n%s\nevidence:\n%s", badID, got, badJSON)
	}
	if got := reportCLI(t, bin, dev.urls["temporal"], dev.urls["ui"], badID, "md"); string(got) != string(badMD) {
		t.Errorf("Markdown report of %s differs from its evidence:\n%s\nevidence:\n%s", badID, got, badMD)
	}
	bad0 := decodeReport(t, badJSON)
	canary := bad0.Waves[0].Sites[0]
	if bad0.State != rollout.StateFailed || canary.Revert == nil || canary.Revert.Commit != revert ||
		!strings.Contains(canary.Revert.Reason, "check sim failed") || len(canary.Gates) == 0 || canary.Gates[0].Worst == nil || canary.Gates[0].Worst.OK {
		t.Errorf("report of the reverted rollout: %s, canary %+v", bad0.State, canary)
	}
	goodReport := decodeReport(t, reportCLI(t, bin, dev.urls["temporal"], dev.urls["ui"], goodID, "json"))
	if tr := goodReport.Trigger; tr == nil || tr.Via != "push" || goodReport.Plan.Blob != git(t, bare, "rev-parse", good+":fleetwave.yaml") ||
		goodReport.Commit.Subject != "podinfo 6.6.0" || !strings.HasPrefix(goodReport.Workflow.URL, dev.urls["ui"]+"/namespaces/default/workflows/") {
		t.Errorf("report of %s: trigger %+v, plan %+v, commit %+v, workflow %+v", goodID, tr, goodReport.Plan, goodReport.Commit, goodReport.Workflow)
	}
	// Each policy decision comes with the input the policies saw, replayed from the history.
	decisions := 0
	for _, w := range goodReport.Waves {
		for _, d := range w.Policy {
			decisions++
			if d.Input == nil || d.Input.Wave.Name != w.Name || !d.Input.Now.Equal(d.At) || d.Input.Rollout.Commit != good {
				t.Errorf("report of %s: wave %s decision %+v, input %+v", goodID, w.Name, d.PolicyDecision, d.Input)
			}
		}
	}
	if decisions < len(goodReport.Waves) || goodReport.PolicyInputsError != "" {
		t.Errorf("report of %s: %d policy decisions for %d waves; %s", goodID, decisions, len(goodReport.Waves), goodReport.PolicyInputsError)
	}

	// Shell completion offers the rollouts, and the waves of one.
	completions := completeCLI(t, bin, dev.urls["temporal"], "report", "rollout/demo/")
	for _, id := range []string{sampleID, goodID, badID} {
		if !strings.Contains(completions, "\n"+id+"\t") && !strings.HasPrefix(completions, id+"\t") {
			t.Errorf("completion of report rollout/demo/ lacks %s:\n%s", id, completions)
		}
	}
	if waves := completeCLI(t, bin, dev.urls["temporal"], "approve", badID, "--wave", "e"); !strings.HasPrefix(waves, "eu-west\tPending\n:") {
		t.Errorf("completion of approve %s --wave e:\n%s", badID, waves)
	}

	// Restart in the middle of a bake: the rollout resumes and finishes.
	fixed, _ := clonePush(t, gitURL, "podinfo 6.7.1", map[string]string{
		"apps/podinfo/deployment.yaml": "kind: Deployment # podinfo 6.7.1\n",
		".fleetwave/sim.yaml":          "reconcileDelay: 1s\ndegraded: []\n",
	})
	fixedID := workflows.RolloutID("demo", fixed)
	fw := workflows.NewClient(tc, "")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := fw.Status(context.Background(), fixedID)
		if err == nil && st.Wave == "eu-west" && st.State == rollout.StateBaking {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout %s never baked eu-west: %+v %v", fixedID, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	dev.stop(t)
	tc.Close()
	dev = startDev(t, bin, data, ports)
	t.Logf("fleetwave dev restarted in %s", dev.started.Round(time.Millisecond))
	tc2, err := client.Dial(client.Options{HostPort: dev.urls["temporal"], Logger: quietLog{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc2.Close()
	if err := waitRollout(t, tc2, fixedID, 3*time.Minute); err != nil {
		t.Fatalf("rollout interrupted by a restart: %v\n%s", err, dev.log())
	}
	allOn(fixed)
	// After the restart, the report of the closed rollout is the one taken before it.
	if got := reportCLI(t, bin, dev.urls["temporal"], dev.urls["ui"], badID, "json"); string(got) != string(badJSON) {
		t.Errorf("report of %s after a restart:\n%s\nbefore:\n%s", badID, got, badJSON)
	}
	checkEvidence(t, bare, "evidence", fixedID)
}

// reportRevertLatency logs the time from the first failed health round of the canary to the
// revert commit's push, from the workflow histories.
func reportRevertLatency(t *testing.T, tc client.Client, id string) {
	ctx := context.Background()
	var firstFail, reverted time.Time
	it := tc.GetWorkflowHistory(ctx, workflows.WaveID(id, "canary"), "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && firstFail.IsZero() {
			for _, p := range a.GetResult().GetPayloads() {
				if strings.Contains(string(p.GetData()), `"ok":false`) {
					firstFail = e.GetEventTime().AsTime()
				}
			}
		}
	}
	it = tc.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil {
			for _, p := range a.GetResult().GetPayloads() {
				// The rollout's only activity that writes is the revert (LoadPlan, Revert, WaitConverged).
				if strings.Contains(string(p.GetData()), `"Created":true`) {
					if reverted.IsZero() {
						reverted = e.GetEventTime().AsTime()
					}
				}
			}
		}
	}
	if firstFail.IsZero() || reverted.IsZero() {
		t.Errorf("cannot find the first failed check (%v) or the revert (%v) in the histories", firstFail, reverted)
		return
	}
	t.Logf("first failed health check to revert commit pushed: %s", reverted.Sub(firstFail).Round(time.Millisecond))
}

type quietLog struct{}

func (quietLog) Debug(string, ...any) {}
func (quietLog) Info(string, ...any)  {}
func (quietLog) Warn(string, ...any)  {}
func (quietLog) Error(string, ...any) {}

// TestDevKilledLeavesNoTemporal: `fleetwave dev` killed with kill -9 runs no cleanup, yet its
// Temporal dev server goes with it (the kernel's parent-death signal), so the next dev finds
// its ports free instead of an orphan serving them. The server is watched through /proc, not
// its port: a request could make it log, and an orphan dies of its first write to the dead
// pipe, which would hide the bug.
func TestDevKilledLeavesNoTemporal(t *testing.T) {
	bin := buildFleetwave(t)
	d := startDev(t, bin, t.TempDir(), freePorts(t), "--no-sample-rollout")
	server := childProcess(t, d.cmd.Process.Pid, "temporal")
	t.Cleanup(func() { _ = syscall.Kill(server, syscall.SIGKILL) }) // an orphan of a failed run
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	waitFor(t, "the Temporal dev server of a killed fleetwave dev to stop", func() bool { return !alive(server) })
}

// childProcess returns the PID of the child of parent whose command is name.
func childProcess(t *testing.T, parent int, name string) int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if s[open+1:end] == name && len(fields) > 1 && fields[1] == strconv.Itoa(parent) {
			pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
			return pid
		}
	}
	t.Fatalf("no %s process under %d", name, parent)
	return 0
}

// alive reports whether pid runs (it exists and is not a zombie waiting to be reaped).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// completeCLI runs the shell completion of fleetwave's arguments and returns what it offers.
func completeCLI(t *testing.T, bin, temporal string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"__complete"}, args...)...)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+temporal)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fleetwave __complete %v: %v", args, err)
	}
	return string(out)
}
