package workflows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/rollout"
)

// Report builds the report of rollout id from its workflow history, so it is the same for a
// closed rollout however many workers restarted, and for a running one shows what happened so
// far. A rollout closed from outside (terminated, timed out) or still running has no final
// status in its history: the status query gives it, which needs a worker of the fleet.
func (c *Client) Report(ctx context.Context, namespace, id string, links report.Links) (report.Report, error) {
	d, err := c.c.DescribeWorkflow(ctx, id, "")
	if err != nil {
		return report.Report{}, fmt.Errorf("rollout %s: %w", id, err)
	}
	runID := d.RawResponse.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	events, err := c.history(ctx, id, runID)
	if err != nil {
		return report.Report{}, err
	}
	var final *rollout.Status
	if !closedWithStatus(events) {
		st, err := c.Status(ctx, id)
		if err != nil {
			return report.Report{}, err
		}
		final = &st
	}
	r, err := c.report(namespace, id, runID, events, final, links)
	if err == nil {
		c.catchUpStates(ctx, &r)
	}
	return r, err
}

// catchUpStates says how each catch-up of the report stands now. A catch-up ID that runs
// another commit belongs to a newer rollout's catch-up: this one was superseded.
func (c *Client) catchUpStates(ctx context.Context, r *report.Report) {
	for i := range r.CatchUps {
		cu := &r.CatchUps[i]
		st, err := c.Status(ctx, cu.Workflow)
		switch {
		case err != nil:
			cu.Reason = err.Error()
		case st.Commit != r.Commit.SHA:
			cu.State, cu.Reason = rollout.StateSuperseded, "the catch-up of "+cu.Site+" now brings it to "+rollout.Short(st.Commit)
		default:
			cu.State, cu.Reason, cu.Verdict = st.State, st.Reason, st.CatchUpVerdict()
		}
	}
}

// ReportOf builds the report of run runID of rollout id from its history so far and its final
// status: what a rollout's last activity writes as its evidence before its workflow closes.
func (c *Client) ReportOf(ctx context.Context, namespace, id, runID string, final rollout.Status, links report.Links) (report.Report, error) {
	events, err := c.history(ctx, id, runID)
	if err != nil {
		return report.Report{}, err
	}
	return c.report(namespace, id, runID, events, &final, links)
}

func (c *Client) report(namespace, id, runID string, events []*historypb.HistoryEvent, final *rollout.Status, links report.Links) (report.Report, error) {
	exec := report.Workflow{Namespace: cmp.Or(namespace, client.DefaultNamespace), ID: id, RunID: runID}
	r, err := BuildReport(exec, events, final)
	if err != nil {
		return r, err
	}
	r.Link(links)
	return r, nil
}

// history reads every event of a workflow run.
func (c *Client) history(ctx context.Context, id, runID string) ([]*historypb.HistoryEvent, error) {
	var events []*historypb.HistoryEvent
	it := c.c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of rollout %s: %w", id, err)
		}
		events = append(events, ev)
	}
	return events, nil
}

// closedWithStatus reports whether the history ends with the rollout's own final status: it
// completed, or failed with its status as the failure's details.
func closedWithStatus(events []*historypb.HistoryEvent) bool {
	if len(events) == 0 {
		return false
	}
	switch events[len(events)-1].GetEventType() {
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
		return true
	}
	return false
}

// BuildReport makes the report of a rollout from its workflow history: the commit and its
// trigger from the start, the plan's blob from LoadPlan, every policy decision from its marker,
// each site's measurements from the waves' progress signals, reverts from the Revert
// activities, and the rest from the final status, which the close event carries; final gives
// it for a history without one (a running rollout, one closed from outside).
func BuildReport(exec report.Workflow, events []*historypb.HistoryEvent, final *rollout.Status) (report.Report, error) {
	b := reportBuilder{
		dc:       DataConverter(),
		r:        report.Report{TypeMeta: rollout.Meta(rollout.KindReport), Rollout: exec.ID, Workflow: exec, Plan: report.Plan{Path: rollout.PlanFile}},
		policies: map[int][]report.Decision{},
		sites:    map[string]*siteTrace{},
		reverts:  map[string]report.Revert{},
		started:  -1,
	}
	if b.anyDecision(events) {
		var err error
		if b.inputs, err = policyInputs(exec, events); err != nil {
			b.r.PolicyInputsError = err.Error()
		}
	}
	for _, ev := range events {
		if err := b.event(ev); err != nil {
			return b.r, fmt.Errorf("event %d (%s): %w", ev.GetEventId(), ev.GetEventType(), err)
		}
	}
	switch {
	case b.final != nil:
	case final != nil:
		b.final = final
	default:
		return b.r, errors.New("the history has no final status and none was given")
	}
	b.finish()
	return b.r, nil
}

type reportBuilder struct {
	dc converter.DataConverter
	r  report.Report
	// scheduled maps an activity's scheduled event ID to its type and input.
	scheduled map[int64]*historypb.ActivityTaskScheduledEventAttributes
	// policies holds the decisions by the index of the wave they were taken for; started is
	// the index of the last wave started.
	policies map[int][]report.Decision
	started  int
	// inputs are the policy inputs the replay recovered, one per EvaluatePolicy marker in
	// order; decided counts the markers read.
	inputs  []rollout.PolicyInput
	decided int
	// sites traces each site ("wave/site") through the progress signals.
	sites   map[string]*siteTrace
	reverts map[string]report.Revert
	final   *rollout.Status
	// callers are the Temporal identities that sent the accepted votes, in order.
	callers []voteCaller
}

// voteCaller is who sent an accepted vote, by the history's UpdateAccepted event.
type voteCaller struct {
	by, via, identity string
	approve           bool
}

// siteTrace is what the progress signals said of a site over time.
type siteTrace struct {
	seen        map[time.Time]bool
	gates       []*report.Gate
	convergedAt time.Time
	message     string // the last message before a revert
	revert      report.Revert
}

func (b *reportBuilder) decode(p *commonpb.Payloads, v any) error {
	if p == nil || len(p.GetPayloads()) == 0 {
		return errors.New("no payload")
	}
	return b.dc.FromPayloads(p, v)
}

func (b *reportBuilder) event(ev *historypb.HistoryEvent) error {
	switch ev.GetEventType() {
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
		var in RolloutInput
		if err := b.decode(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in); err != nil {
			return err
		}
		b.r.Fleet, b.r.Commit.SHA, b.r.Trigger = in.Fleet, in.Commit, in.Trigger
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
		if b.scheduled == nil {
			b.scheduled = map[int64]*historypb.ActivityTaskScheduledEventAttributes{}
		}
		b.scheduled[ev.GetEventId()] = ev.GetActivityTaskScheduledEventAttributes()
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
		a := ev.GetActivityTaskCompletedEventAttributes()
		return b.activity(b.scheduled[a.GetScheduledEventId()], a.GetResult(), ev.GetEventTime().AsTime())
	case enumspb.EVENT_TYPE_MARKER_RECORDED:
		return b.marker(ev.GetMarkerRecordedEventAttributes())
	case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
		a := ev.GetStartChildWorkflowExecutionInitiatedEventAttributes()
		if a.GetWorkflowType().GetName() == CatchUpType {
			var in CatchUpInput
			if err := b.decode(a.GetInput(), &in); err != nil {
				return err
			}
			b.r.CatchUps = append(b.r.CatchUps, report.CatchUp{Site: in.Site, Workflow: a.GetWorkflowId()})
			return nil
		}
		if a.GetWorkflowType().GetName() != "Wave" {
			return nil // a watch over a wave that succeeded
		}
		var in WaveInput
		if err := b.decode(a.GetInput(), &in); err != nil {
			return err
		}
		b.started = max(b.started, in.Status.Index)
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
		a := ev.GetWorkflowExecutionSignaledEventAttributes()
		if a.GetSignalName() != signalWaveProgress {
			return nil
		}
		var c rollout.WaveChange
		if err := b.decode(a.GetInput(), &c); err != nil {
			return err
		}
		b.progress(c)
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
		c, ok, err := acceptedVote(b.dc, ev)
		if err != nil {
			return err
		}
		if ok {
			b.callers = append(b.callers, c)
		}
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
		var res RolloutResult
		if err := b.decode(ev.GetWorkflowExecutionCompletedEventAttributes().GetResult(), &res); err != nil {
			return err
		}
		b.final = &res.Status
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
		f := ev.GetWorkflowExecutionFailedEventAttributes().GetFailure()
		var st rollout.Status
		if details := f.GetApplicationFailureInfo().GetDetails(); details != nil && b.decode(details, &st) == nil && st.Rollout != "" {
			b.final = &st
		}
	}
	return nil
}

// activity reads what LoadPlan and Revert returned.
func (b *reportBuilder) activity(s *historypb.ActivityTaskScheduledEventAttributes, result *commonpb.Payloads, at time.Time) error {
	if s == nil {
		return nil
	}
	switch s.GetActivityType().GetName() {
	case "LoadPlan":
		var res activities.LoadPlanResult
		if err := b.decode(result, &res); err != nil {
			return err
		}
		b.r.Commit.Subject, b.r.Commit.Author, b.r.Plan.Blob = res.Subject, res.Author, res.PlanBlob
		b.r.Simulated = res.Simulated
		for _, f := range res.Policies {
			b.r.Plan.Policies = append(b.r.Plan.Policies, report.File{Path: f.Path, Blob: gitops.BlobHash([]byte(f.Source))})
		}
	case "Revert":
		var in activities.RevertInput
		var res activities.ChangeResult
		if err := b.decode(s.GetInput(), &in); err != nil {
			return err
		}
		if err := b.decode(result, &res); err != nil {
			return err
		}
		for _, c := range res.Changes {
			if commit := c.RolloutCommit(); commit != "" {
				b.reverts[c.Site] = report.Revert{Commit: commit, Reason: in.Reason, At: at}
			} else if c.Problem != "" {
				b.reverts[c.Site] = report.Revert{Reason: in.Reason, Problem: c.Problem, At: at}
			}
		}
	}
	return nil
}

// anyDecision reports whether the history holds a policy decision: a rollout whose plan has
// no policies has none, and its report needs no replay.
func (b *reportBuilder) anyDecision(events []*historypb.HistoryEvent) bool {
	for _, ev := range events {
		if m := ev.GetMarkerRecordedEventAttributes(); m != nil && b.markerActivity(m) == "EvaluatePolicy" {
			return true
		}
	}
	return false
}

// markerActivity is the activity type of a local activity's marker, "" for other markers.
func (b *reportBuilder) markerActivity(m *historypb.MarkerRecordedEventAttributes) string {
	if m.GetMarkerName() != "LocalActivity" {
		return ""
	}
	var data struct{ ActivityType string }
	if b.decode(m.GetDetails()["data"], &data) != nil {
		return ""
	}
	return data.ActivityType
}

// marker reads a policy decision from its local activity's marker: it is for the wave after
// the last one started.
func (b *reportBuilder) marker(m *historypb.MarkerRecordedEventAttributes) error {
	if m.GetMarkerName() != "LocalActivity" {
		return nil
	}
	var data struct{ ActivityType string }
	if err := b.decode(m.GetDetails()["data"], &data); err != nil {
		return err
	}
	if data.ActivityType != "EvaluatePolicy" {
		return nil
	}
	b.decided++
	if m.GetFailure() != nil {
		return nil
	}
	d := report.Decision{}
	if err := b.decode(m.GetDetails()["result"], &d.PolicyDecision); err != nil {
		return err
	}
	if b.decided <= len(b.inputs) {
		d.Input = &b.inputs[b.decided-1]
	}
	b.policies[b.started+1] = append(b.policies[b.started+1], d)
	return nil
}

// progress folds a wave's change into the sites' traces: each new observation's
// measurements, the first healthy one, the revert.
func (b *reportBuilder) progress(c rollout.WaveChange) {
	for _, s := range c.Sites {
		key := c.Wave + "/" + s.Name
		t := b.sites[key]
		if t == nil {
			t = &siteTrace{seen: map[time.Time]bool{}}
			b.sites[key] = t
		}
		if s.UpdatedAt.IsZero() || t.seen[s.UpdatedAt] {
			continue
		}
		t.seen[s.UpdatedAt] = true
		if s.Revert != "" {
			if t.revert.Commit == "" {
				t.revert = report.Revert{Commit: s.Revert, Reason: t.message, At: s.UpdatedAt}
			}
			continue
		}
		if s.Message != "" {
			t.message = s.Message
		}
		if s.Verdict == rollout.VerdictHealthy && s.Failures == 0 && t.convergedAt.IsZero() {
			t.convergedAt = s.UpdatedAt
		}
		if s.Verdict == rollout.VerdictHealthy || s.Verdict == rollout.VerdictDegraded || s.Verdict == rollout.VerdictUnknown {
			t.measure(s.Checks, s.UpdatedAt)
		}
	}
}

func (t *siteTrace) measure(checks []rollout.CheckResult, at time.Time) {
	for _, c := range checks {
		i := slices.IndexFunc(t.gates, func(g *report.Gate) bool { return g.Name == c.Name })
		if i < 0 {
			t.gates = append(t.gates, &report.Gate{Name: c.Name})
			i = len(t.gates) - 1
		}
		t.gates[i].Measure(c, at)
	}
}

// finish lays out the report from the final status and what the events said.
// withCallers gives each vote of the request the identity that sent it (withCallers).
func (b *reportBuilder) withCallers(a *rollout.ApprovalStatus) *rollout.ApprovalStatus {
	return withCallers(a, &b.callers)
}

// withCallers gives each vote of the request the identity that sent it: the first accepted
// update by the same voter, via and decision not given to another vote yet (taken from
// callers).
func withCallers(a *rollout.ApprovalStatus, callers *[]voteCaller) *rollout.ApprovalStatus {
	if a == nil || len(a.Votes) == 0 || len(*callers) == 0 {
		return a
	}
	out := *a
	out.Votes = slices.Clone(a.Votes)
	for i := range out.Votes {
		v := &out.Votes[i]
		for j, c := range *callers {
			if c.by == v.By && c.via == v.Via && c.approve == v.Approve {
				v.Caller = c.identity
				*callers = slices.Delete(*callers, j, j+1)
				break
			}
		}
	}
	return &out
}

// acceptedVote reads the vote an UpdateAccepted event accepted, with the identity that sent
// it; ok is false for any other update.
func acceptedVote(dc converter.DataConverter, ev *historypb.HistoryEvent) (c voteCaller, ok bool, err error) {
	req := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest()
	name := req.GetInput().GetName()
	if name != UpdateApprove && name != UpdateReject {
		return c, false, nil
	}
	var in VoteInput
	if err := dc.FromPayloads(req.GetInput().GetArgs(), &in); err != nil {
		return c, false, fmt.Errorf("decode a vote: %w", err)
	}
	return voteCaller{by: in.By, via: in.Via, identity: req.GetMeta().GetIdentity(), approve: name == UpdateApprove}, true, nil
}

// VoteCallers gives the votes of the status the Temporal identities that sent them, from the
// rollout's history (the status query cannot: a workflow does not see who sent an update).
// It reads the history only when some wave has votes.
func (c *Client) VoteCallers(ctx context.Context, st *rollout.Status) error {
	voted := false
	for _, w := range st.Waves {
		voted = voted || (w.Approval != nil && len(w.Approval.Votes) > 0)
	}
	if !voted {
		return nil
	}
	events, err := c.history(ctx, st.Rollout, "")
	if err != nil {
		return err
	}
	var callers []voteCaller
	dc := DataConverter()
	for _, ev := range events {
		if ev.GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED {
			continue
		}
		vc, ok, err := acceptedVote(dc, ev)
		if err != nil {
			return err
		}
		if ok {
			callers = append(callers, vc)
		}
	}
	st.Waves = slices.Clone(st.Waves)
	for i := range st.Waves {
		st.Waves[i].Approval = withCallers(st.Waves[i].Approval, &callers)
	}
	return nil
}

func (b *reportBuilder) finish() {
	st := b.final
	r := &b.r
	r.Rollout = st.Rollout
	r.Fleet = cmp.Or(r.Fleet, st.Fleet)
	r.Commit.SHA = cmp.Or(r.Commit.SHA, st.Commit)
	r.Commit.Subject = cmp.Or(r.Commit.Subject, st.Subject)
	r.State, r.Reason, r.Controls = st.State, st.Reason, st.Controls
	r.Simulated = r.Simulated || st.Simulated
	r.StartedAt, r.FinishedAt = st.StartedAt, st.FinishedAt
	r.Duration = report.Duration(st.StartedAt, st.FinishedAt)
	for i, w := range st.Waves {
		rw := report.Wave{Name: w.Name, Index: w.Index, State: w.State, StartedAt: w.StartedAt, ConvergedAt: w.ConvergedAt,
			FinishedAt: w.FinishedAt, Duration: report.Duration(w.StartedAt, w.FinishedAt), Message: w.Message,
			Policy: b.policies[i], Approval: b.withCallers(w.Approval)}
		if len(rw.Policy) == 0 && w.Policy != nil {
			rw.Policy = []report.Decision{{PolicyDecision: *w.Policy}}
		}
		for _, s := range w.Sites {
			rs := report.Site{Name: s.Name, Branch: s.Branch, Verdict: s.Verdict, Promotion: s.Promotion, Previous: s.Previous, Message: s.Message}
			t := b.sites[w.Name+"/"+s.Name]
			if t == nil {
				t = &siteTrace{}
				t.measure(s.Checks, s.UpdatedAt)
			}
			rs.ConvergedAt = t.convergedAt
			for _, g := range t.gates {
				rs.Gates = append(rs.Gates, *g)
			}
			if rv, ok := b.reverts[s.Name]; ok && (rv.Commit == s.Revert || s.Revert == "") {
				rs.Revert = &rv
			} else if s.Revert != "" {
				rv := t.revert
				rv.Commit = s.Revert
				rs.Revert = &rv
			}
			rw.Sites = append(rw.Sites, rs)
		}
		r.Waves = append(r.Waves, rw)
	}
}
