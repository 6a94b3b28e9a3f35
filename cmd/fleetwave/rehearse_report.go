package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/protobuf/proto"

	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// rehearsalReport is what `fleetwave rehearse --report` writes: the rollout's final status, in
// the shape of `fleetwave status -o json`, and what the rehearsal did and measured.
type rehearsalReport struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Status     rollout.Status   `json:"status"`
	Rehearsal  rehearsalSummary `json:"rehearsal"`
}

// rehearsalSummary is the report's rehearsal object. Times are on the plan's scale, from the
// start of the rollout.
type rehearsalSummary struct {
	Plan      string  `json:"plan"`
	TimeScale float64 `json:"timeScale"`
	// SimulatedClusters lists the sites whose cluster context the rehearsal simulated.
	SimulatedClusters []string `json:"simulatedClusters,omitempty"`
	// ChecksLeftOut names the plan's health checks, which a rehearsal does not measure.
	ChecksLeftOut  []string                 `json:"checksLeftOut,omitempty"`
	Faults         []faultApplied           `json:"faults,omitempty"`
	PushesRejected int                      `json:"pushesRejected,omitempty"`
	Waves          []waveSummary            `json:"waves"`
	Approvals      []rollout.PolicyApproval `json:"approvals,omitempty"`
	Promoted       int                      `json:"promoted"`
	Reverted       int                      `json:"reverted"`
	Unknown        int                      `json:"unknown"`
	// Deferred counts the sites Deferred at the end (offline, health.offline).
	Deferred int `json:"deferred,omitempty"`
	// Duration is the rollout's on the plan's scale; RealDuration how long the rehearsal took.
	Duration     string        `json:"duration"`
	RealDuration string        `json:"realDuration"`
	Histories    []historySize `json:"histories"`
	Git          gitCheck      `json:"git"`
	// CatchUps are the catch-ups of the Deferred sites after the rollout succeeded, as far as
	// --catch-up-timeout waited for them (the rollout's own status keeps them Deferred).
	CatchUps []catchUpSummary `json:"catchUps,omitempty"`
}

// catchUpSummary is how a catch-up ended: its site's verdict (Healthy, Reverted; empty when
// it never promoted), its state, and when it ended on the plan's clock.
type catchUpSummary struct {
	Site    string          `json:"site"`
	Commit  string          `json:"commit"`
	Verdict rollout.Verdict `json:"verdict,omitempty"`
	State   rollout.State   `json:"state"`
	At      string          `json:"at,omitempty"`
	Reason  string          `json:"reason,omitempty"`
}

// faultApplied is a fault of the file and what it did: the sites it acted on, first and last.
type faultApplied struct {
	Kind string `json:"kind"`
	// Fault is the fault as the file writes it, times on the plan's scale.
	Fault string      `json:"fault"`
	Sites []faultSite `json:"sites,omitempty"`
	// Rejected counts the pushes a rejectPushes fault had rejected.
	Rejected int `json:"rejected,omitempty"`
	// Restarted is when a restartWorker fault killed the worker and started another.
	Restarted string `json:"restarted,omitempty"`
}

// gitCheck is what the site branches hold at the end, read with the git CLI: every promotion
// and revert commit of the rollout, and the sites where they are not what the status says.
type gitCheck struct {
	Promotions int `json:"promotions"`
	Reverts    int `json:"reverts"`
	// Duplicates are sites whose branch holds more than one promotion, or more than one
	// revert, of the rollout.
	Duplicates []string `json:"duplicates,omitempty"`
	// Mismatches are sites whose branch disagrees with the status (promoted or reverted).
	Mismatches []string `json:"mismatches,omitempty"`
}

type faultSite struct {
	Site  string `json:"site"`
	First string `json:"first"`
	Last  string `json:"last"`
}

// waveSummary is one wave of the rehearsal.
type waveSummary struct {
	Name  string        `json:"name"`
	State rollout.State `json:"state"`
	Start string        `json:"start,omitempty"`
	End   string        `json:"end,omitempty"`
	Sites int           `json:"sites"`
	// Verdicts counts the wave's sites by verdict.
	Verdicts map[rollout.Verdict]int `json:"verdicts"`
	Policy   string                  `json:"policy,omitempty"`
	Message  string                  `json:"message,omitempty"`
}

// historySize is one workflow's history: events and bytes over all its runs.
type historySize struct {
	Workflow string `json:"workflow"`
	Runs     int    `json:"runs"`
	Events   int    `json:"events"`
	Bytes    int    `json:"bytes"`
}

func (r *rehearsal) report(ctx context.Context, id string, st rollout.Status, start, end time.Time) (*rehearsalReport, error) {
	scale := r.opts.scale
	at := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return planDuration(t.Sub(start), scale).Round(time.Second).String()
	}
	sum := rehearsalSummary{Plan: r.in.source, TimeScale: scale,
		Duration: planDuration(end.Sub(start), scale).Round(time.Second).String(), RealDuration: end.Sub(start).Round(time.Millisecond).String()}
	for _, s := range r.in.plan.Sites {
		if s.Cluster != nil && s.Cluster.Context != "" {
			sum.SimulatedClusters = append(sum.SimulatedClusters, s.Name)
		}
	}
	for _, c := range r.in.plan.Health.Checks {
		sum.ChecksLeftOut = append(sum.ChecksLeftOut, c.Name)
	}
	effects := r.fleet.Effects()
	for i, f := range r.in.faults.Faults {
		fa := faultApplied{Kind: f.Kind(), Fault: faultText(f)}
		for _, e := range effects {
			if e.Fault == i {
				fa.Sites = append(fa.Sites, faultSite{Site: e.Site, First: at(e.First), Last: at(e.Last)})
			}
		}
		if f.RejectPushes != nil {
			fa.Rejected = r.rejected.take(f.RejectPushes.Count)
		}
		if f.RestartWorker != nil {
			// The restarts happened in the order of their times.
			k := 0
			for j, g := range r.in.faults.Faults {
				if g.RestartWorker != nil && (g.RestartWorker.At < f.RestartWorker.At || (g.RestartWorker.At == f.RestartWorker.At && j < i)) {
					k++
				}
			}
			if k < len(r.restarts) {
				fa.Restarted = at(r.restarts[k])
			}
		}
		sum.Faults = append(sum.Faults, fa)
	}
	for _, w := range st.Waves {
		ws := waveSummary{Name: w.Name, State: w.State, Start: at(w.StartedAt), End: at(w.FinishedAt), Sites: len(w.Sites),
			Verdicts: map[rollout.Verdict]int{}, Message: w.Message}
		if d := w.Policy; d != nil {
			ws.Policy = strings.Join(append(append([]string{d.Outcome}, d.Deny...), d.Reasons...), "; ")
		}
		for _, s := range w.Sites {
			ws.Verdicts[s.Verdict]++
			switch {
			case s.Verdict == rollout.VerdictReverted:
				sum.Reverted++
			case s.Verdict == rollout.VerdictUnknown:
				sum.Unknown++
			case s.Verdict == rollout.VerdictDeferred:
				sum.Deferred++
			}
			if s.Promoted {
				sum.Promoted++
			}
		}
		if w.Approval != nil {
			for _, v := range w.Approval.Votes {
				sum.Approvals = append(sum.Approvals, rollout.PolicyApproval{Wave: w.Name, By: v.By, Via: v.Via, At: v.At})
			}
		}
		sum.Waves = append(sum.Waves, ws)
	}
	ids := []string{id}
	for _, w := range st.Waves {
		if !w.StartedAt.IsZero() {
			ids = append(ids, workflows.WaveID(id, w.Name))
		}
	}
	for _, wid := range ids {
		h, err := r.historySize(ctx, wid)
		if err != nil {
			return nil, err
		}
		sum.Histories = append(sum.Histories, h)
	}
	// The watches over the waves that succeeded before the last (health.watch: rollout).
	for _, w := range st.Waves[:max(len(st.Waves)-1, 0)] {
		if w.State != rollout.StateSucceeded {
			continue
		}
		h, err := r.historySize(ctx, workflows.WatchID(id, w.Name))
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			continue // health.watch: wave
		}
		if err != nil {
			return nil, err
		}
		sum.Histories = append(sum.Histories, h)
	}
	check, err := r.checkGit(id, st)
	if err != nil {
		return nil, err
	}
	sum.Git = check
	return &rehearsalReport{APIVersion: rollout.APIVersion, Kind: "RehearsalReport", Status: st, Rehearsal: sum}, nil
}

// checkGit reads every site branch with the git CLI and compares it with the status.
func (r *rehearsal) checkGit(id string, st rollout.Status) (gitCheck, error) {
	var out gitCheck
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			branch := r.in.plan.SiteBranchFor(s.Name)
			cmd := exec.Command("git", "-C", r.repoDir, "log", "--format=%s%x1f%(trailers:key="+gitops.TrailerRollout+",valueonly,separator=%x2C)", r.seed+".."+branch)
			data, err := cmd.Output()
			if err != nil {
				return out, fmt.Errorf("rehearsal: read %s: %w", branch, err)
			}
			promotions, reverts := 0, 0
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				subject, trailer, _ := strings.Cut(line, "\x1f")
				if strings.TrimSpace(trailer) != id {
					continue
				}
				switch {
				case strings.HasPrefix(subject, "Revert "):
					reverts++
				case strings.HasPrefix(subject, "Promote "):
					promotions++
				}
			}
			out.Promotions += promotions
			out.Reverts += reverts
			// A Deferred site's promotion was withdrawn by a revert; one that rejoined was promoted
			// again: promotions and reverts alternate, and what is left standing is what the
			// status says.
			if promotions > reverts+1 || reverts > promotions {
				out.Duplicates = append(out.Duplicates, s.Name)
			}
			standing := s.Promoted && s.Revert == "" && s.Verdict != rollout.VerdictReverted
			if (promotions > 0) != (s.Promoted || reverts > 0) || (promotions-reverts == 1) != standing {
				out.Mismatches = append(out.Mismatches, fmt.Sprintf("%s: %d promotions, %d reverts; status: promoted %v, %s", s.Name, promotions, reverts, s.Promoted, s.Verdict))
			}
		}
	}
	return out, nil
}

// historySize reads every run of a workflow, from its first, following continue-as-new.
func (r *rehearsal) historySize(ctx context.Context, id string) (historySize, error) {
	out := historySize{Workflow: id}
	desc, err := r.tc.DescribeWorkflow(ctx, id, "")
	if err != nil {
		return out, fmt.Errorf("rehearsal: history of %s: %w", id, err)
	}
	run := desc.RawResponse.GetWorkflowExecutionInfo().GetFirstRunId()
	for run != "" {
		out.Runs++
		next := ""
		it := r.tc.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				return out, fmt.Errorf("rehearsal: history of %s: %w", id, err)
			}
			out.Events++
			out.Bytes += proto.Size(e)
			if a := e.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
				next = a.GetNewExecutionRunId()
			}
		}
		run = next
	}
	return out, nil
}

// outcome is the rehearsal's last line: the rollout's final state and why.
func (rep *rehearsalReport) outcome() string {
	st := rep.Status
	line := fmt.Sprintf("rehearsal done: rollout %s in %s on the plan's clock (%s real): %d promoted, %d reverted, %d unknown",
		st.State, rep.Rehearsal.Duration, rep.Rehearsal.RealDuration, rep.Rehearsal.Promoted, rep.Rehearsal.Reverted, rep.Rehearsal.Unknown)
	if st.Reason != "" {
		line += ": " + st.Reason
	}
	if len(rep.Rehearsal.CatchUps) > 0 {
		ends := make([]string, len(rep.Rehearsal.CatchUps))
		for i, c := range rep.Rehearsal.CatchUps {
			ends[i] = c.Site + " " + string(cmp.Or(rollout.State(c.Verdict), c.State))
		}
		line += "; catch-ups: " + strings.Join(ends, ", ")
	}
	return line
}

func (rep *rehearsalReport) write(path string) error {
	var data []byte
	if filepath.Ext(path) == ".json" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		data = append(b, '\n')
	} else {
		data = []byte(rep.markdown())
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	return nil
}

// markdown is the report a person reads to decide whether the plan is safe.
func (rep *rehearsalReport) markdown() string {
	st, sum := rep.Status, rep.Rehearsal
	var b strings.Builder
	fmt.Fprintf(&b, "# Rehearsal of %s\n\n", sum.Plan)
	fmt.Fprintf(&b, "**Outcome: rollout %s** after %s on the plan's clock (%s real, time scale %g).", st.State, sum.Duration, sum.RealDuration, sum.TimeScale)
	if st.Reason != "" {
		fmt.Fprintf(&b, " %s.", strings.TrimSuffix(st.Reason, "."))
	}
	fmt.Fprintf(&b, "\n\n%s promoted, %d reverted, %d unknown, %d deferred at the end.\n\n", rollout.Count(sum.Promoted, "site"), sum.Reverted, sum.Unknown, sum.Deferred)
	b.WriteString("## Waves\n\n| wave | state | start | end | sites | verdicts |\n|---|---|---|---|---|---|\n")
	for _, w := range sum.Waves {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s |\n", w.Name, w.State, dash(w.Start), dash(w.End), w.Sites, verdictList(w.Verdicts))
	}
	if len(sum.CatchUps) > 0 {
		b.WriteString("\n## Catch-ups\n\nAfter the rollout, each deferred site's catch-up (`catchup/<fleet>/<site>`):\n\n| site | state | verdict | ended | reason |\n|---|---|---|---|---|\n")
		for _, c := range sum.CatchUps {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", c.Site, c.State, dash(string(c.Verdict)), dash(c.At), dash(strings.ReplaceAll(c.Reason, "|", "\\|")))
		}
	}
	if len(sum.Faults) > 0 {
		b.WriteString("\n## Faults\n\n| fault | acted on |\n|---|---|\n")
		for _, f := range sum.Faults {
			fmt.Fprintf(&b, "| %s | %s |\n", f.Fault, faultSites(f))
		}
	}
	var reverts []string
	for _, w := range st.Waves {
		for _, s := range w.Sites {
			if s.Verdict == rollout.VerdictReverted || s.Revert != "" {
				reverts = append(reverts, fmt.Sprintf("- %s (wave %s): %s", s.Name, w.Name, cmp.Or(s.Message, "reverted")))
			}
		}
	}
	if len(reverts) > 0 {
		b.WriteString("\n## Reverted sites\n\n" + strings.Join(reverts, "\n") + "\n")
	}
	if len(sum.Approvals) > 0 {
		b.WriteString("\n## Approvals\n\n")
		for _, a := range sum.Approvals {
			fmt.Fprintf(&b, "- wave %s: %s via %s\n", a.Wave, a.By, a.Via)
		}
	}
	g := sum.Git
	fmt.Fprintf(&b, "\n## Git\n\nThe site branches hold %s and %s of the rollout", rollout.Count(g.Promotions, "promotion commit"), rollout.Count(g.Reverts, "revert commit"))
	switch {
	case len(g.Duplicates) == 0 && len(g.Mismatches) == 0:
		b.WriteString(": one per site at most, as the status says.\n")
	default:
		b.WriteString(".\n")
		for _, d := range g.Duplicates {
			fmt.Fprintf(&b, "- **duplicate** on %s\n", d)
		}
		for _, m := range g.Mismatches {
			fmt.Fprintf(&b, "- **mismatch** %s\n", m)
		}
	}
	b.WriteString("\n## Workflow histories\n\n| workflow | runs | events | bytes |\n|---|---|---|---|\n")
	for _, h := range sum.Histories {
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", h.Workflow, h.Runs, h.Events, h.Bytes)
	}
	b.WriteString("\n## What a rehearsal does not show\n\n")
	b.WriteString("- The sites are simulated: they apply a promotion when the git server has it, and their health is what the faults make it.\n")
	if len(sum.ChecksLeftOut) > 0 {
		fmt.Fprintf(&b, "- The plan's health checks (%s) were left out: they would reach real endpoints.\n", strings.Join(sum.ChecksLeftOut, ", "))
	}
	if len(sum.SimulatedClusters) > 0 {
		fmt.Fprintf(&b, "- %s name a cluster context; simulated sites stood in for them.\n", rollout.Count(len(sum.SimulatedClusters), "site"))
	}
	b.WriteString("- Policies (freezes, business hours, soaks) were judged on the plan's clock, from the rollout's start.\n")
	return b.String()
}

func verdictList(m map[rollout.Verdict]int) string {
	keys := make([]string, 0, len(m))
	for v := range m {
		keys = append(keys, string(v))
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[rollout.Verdict(k)], k)
	}
	return strings.Join(parts, ", ")
}

// faultText writes a fault as the faults file does.
func faultText(f rollout.Fault) string {
	switch {
	case f.Degrade != nil:
		s := "degrade " + strings.Join(f.Degrade.Sites, ", ")
		if f.Degrade.After > 0 {
			s += " after " + f.Degrade.After.String()
		}
		return s
	case f.Unreachable != nil:
		s := fmt.Sprintf("unreachable %s from %s", strings.Join(f.Unreachable.Sites, ", "), f.Unreachable.From)
		if f.Unreachable.For > 0 {
			s += " for " + f.Unreachable.For.String()
		}
		return s
	case f.SlowReconcile != nil:
		return fmt.Sprintf("slowReconcile %s (p50 %s, p99 %s)", strings.Join(f.SlowReconcile.Sites, ", "), f.SlowReconcile.P50, f.SlowReconcile.P99)
	case f.Flap != nil:
		return fmt.Sprintf("flap %s every %s", strings.Join(f.Flap.Sites, ", "), f.Flap.Period)
	case f.RejectPushes != nil:
		return fmt.Sprintf("rejectPushes %d", f.RejectPushes.Count)
	case f.RestartWorker != nil:
		return "restartWorker at " + f.RestartWorker.At.String()
	}
	return f.Kind()
}

func faultSites(f faultApplied) string {
	switch f.Kind {
	case "rejectPushes":
		if f.Rejected == 1 {
			return "the git server: 1 push rejected"
		}
		return fmt.Sprintf("the git server: %s rejected", rollout.Count(f.Rejected, "push"))
	case "restartWorker":
		if f.Restarted == "" {
			return "nothing (the rollout ended first)"
		}
		return "the worker: killed at " + f.Restarted + " and started again"
	}
	if len(f.Sites) == 0 {
		return "nothing (its sites never got there)"
	}
	var parts []string
	for i, s := range f.Sites {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("and %d more", len(f.Sites)-10))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s to %s)", s.Site, s.First, s.Last))
	}
	return strings.Join(parts, ", ")
}
