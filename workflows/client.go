package workflows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/fleetwave/fleetwave/rollout"
)

// Client starts and inspects rollouts; every front end goes through it, so IDs, options and
// search attributes are the same whoever starts a rollout.
type Client struct {
	c         client.Client
	taskQueue string
}

// NewClient wraps a Temporal client. It starts workflows on taskQueue, or on each fleet's own
// queue (TaskQueue) when taskQueue is "".
func NewClient(c client.Client, taskQueue string) *Client {
	return &Client{c: c, taskQueue: taskQueue}
}

// queue is the task queue of fleet's workflows.
func (c *Client) queue(fleet string) string {
	if c.taskQueue != "" {
		return c.taskQueue
	}
	return TaskQueue(fleet)
}

// StartOptions returns the options a rollout of in is started with: ID RolloutID, conflict
// policy "use existing" and reuse policy "reject duplicate", so starting the same commit twice,
// while it runs or after it ended, never starts a second rollout.
func (c *Client) StartOptions(in RolloutInput) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       RolloutID(in.Fleet, in.Commit),
		TaskQueue:                c.queue(in.Fleet),
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:            fmt.Sprintf("roll out %s to fleet %s", rollout.Short(in.Commit), in.Fleet),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrFleet.ValueSet(in.Fleet), AttrCommit.ValueSet(in.Commit), AttrState.ValueSet(string(rollout.StatePending))),
	}
}

// Start starts the rollout of in, or returns the existing rollout of the same commit.
func (c *Client) Start(ctx context.Context, in RolloutInput) (client.WorkflowRun, error) {
	opts := c.StartOptions(in)
	run, err := c.c.ExecuteWorkflow(ctx, opts, Rollout, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return c.c.GetWorkflow(ctx, opts.ID, ""), nil
	}
	if err != nil {
		return nil, fmt.Errorf("start rollout %s: %w", opts.ID, err)
	}
	return run, nil
}

// Status returns the state of a rollout: its status query (which includes the live status of
// the wave in progress, reported by the wave itself), and what each pending activity of the
// rollout and of its running wave waits on, with its attempt count and last failure, so "the
// git server is unreachable" shows while Temporal retries. A rollout closed from outside
// (terminated, timed out, cancelled) is reported in that state.
func (c *Client) Status(ctx context.Context, id string) (rollout.Status, error) {
	var st rollout.Status
	v, err := c.c.QueryWorkflow(ctx, id, "", QueryStatus)
	if err != nil {
		return st, fmt.Errorf("query rollout %s: %w", id, err)
	}
	if err := v.Get(&st); err != nil {
		return st, fmt.Errorf("decode status of rollout %s: %w", id, err)
	}
	// A workflow closed from outside (terminated, timed out, cancelled) never wrote its final
	// state: Temporal's execution status is the truth, not the last state it queried as.
	if d, err := c.c.DescribeWorkflow(ctx, id, ""); err == nil {
		info := d.RawResponse.GetWorkflowExecutionInfo()
		if closed, ok := rollout.ClosedState(info.GetStatus().String()); ok && !st.State.Done() {
			st.Reason = strings.TrimSuffix(fmt.Sprintf("the workflow was %s in Temporal while %s; %s",
				strings.ToLower(string(closed)), st.State, st.Reason), "; ")
			st.State = closed
			if info.GetCloseTime() != nil {
				st.FinishedAt = info.GetCloseTime().AsTime()
			}
			return st, nil
		}
	}
	ids := []string{id}
	for _, w := range st.Waves {
		if w.Name != st.Wave || w.State == rollout.StatePending || w.State.Done() {
			continue
		}
		// The rollout promotes while a wave runs; the wave's own phase is the more precise answer.
		if st.State == rollout.StatePromoting {
			st.State = w.State
		}
		ids = append(ids, WaveID(id, w.Name))
	}
	for _, wid := range ids {
		d, err := c.c.DescribeWorkflow(ctx, wid, "")
		if err != nil || d.RawResponse == nil {
			continue
		}
		for _, p := range d.RawResponse.GetPendingActivities() {
			line := fmt.Sprintf("%s (attempt %d)", p.GetActivityType().GetName(), p.GetAttempt())
			if f := p.GetLastFailure(); f != nil {
				line += ": " + f.GetMessage()
			}
			st.Waiting = append(st.Waiting, line)
		}
	}
	return st, nil
}

// ErrNoRollout means the rollout does not exist, or has ended and takes no more controls.
var ErrNoRollout = errors.New("no running rollout with this ID (it does not exist, or it has ended)")

// Control sends a control update (UpdatePause, UpdateResume, UpdateAbort, UpdateRollback) to a
// running rollout and waits for its answer. A refused control returns the rollout's reason.
//
// A rollback of a rollout that has ended starts its Rollback workflow instead (RollbackID; a
// second one while it runs is the same run): it reverts every site the rollout promoted that
// still runs its promotion.
func (c *Client) Control(ctx context.Context, id, action string, in ControlInput) (ControlResult, error) {
	var res ControlResult
	err := c.update(ctx, id, action, in, &res)
	if action != UpdateRollback || !errors.Is(err, ErrNoRollout) {
		return res, err
	}
	d, derr := c.c.DescribeWorkflow(ctx, id, "")
	if derr != nil || d.RawResponse.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return res, err // no such rollout
	}
	st, serr := c.Status(ctx, id)
	if serr != nil {
		return res, fmt.Errorf("rollback %s: the rollout has ended, and its status cannot be read: %w", id, serr)
	}
	run, serr := c.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       RollbackID(id),
		TaskQueue:                c.queue(st.Fleet),
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            "roll back " + id + ": revert every site it promoted that still runs its promotion",
		TypedSearchAttributes:    temporal.NewSearchAttributes(AttrFleet.ValueSet(st.Fleet), AttrCommit.ValueSet(st.Commit)),
	}, Rollback, RollbackInput{Rollout: id, By: in.By, Reason: in.Reason})
	if serr != nil {
		return res, fmt.Errorf("rollback %s: start its rollback: %w", id, serr)
	}
	return ControlResult{State: st.State, Message: fmt.Sprintf("rollout %s has ended (%s): workflow %s reverts every site it promoted that still runs its promotion, and names the sites a later rollout moved on",
		id, st.State, run.GetID())}, nil
}

// Vote sends an approval vote (UpdateApprove or UpdateReject) to a running rollout and waits
// for its answer. A refused vote (not an approver, wrong wave, a second vote, an expired
// request) returns the rollout's reason.
func (c *Client) Vote(ctx context.Context, id, action string, in VoteInput) (VoteResult, error) {
	var res VoteResult
	return res, c.update(ctx, id, action, in, &res)
}

func (c *Client) update(ctx context.Context, id, name string, in, out any) error {
	h, err := c.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   name,
		Args:         []any{in},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, out)
	}
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return fmt.Errorf("%s %s: %w", name, id, ErrNoRollout)
	case err != nil:
		return fmt.Errorf("%s %s: %s", name, id, errorMessage(err))
	}
	return nil
}

// Summary is one rollout as `fleetwave list` shows it, from Temporal's visibility store.
type Summary struct {
	Rollout string    `json:"rollout"`
	Fleet   string    `json:"fleet"`
	Commit  string    `json:"commit"`
	Wave    string    `json:"wave,omitempty"`
	State   string    `json:"state"`
	Started time.Time `json:"startedAt,omitzero"`
	Closed  time.Time `json:"closedAt,omitzero"`
}

// ListFilter narrows List; empty fields match everything.
type ListFilter struct {
	Fleet, State, Commit string
	// Running keeps only rollouts that have not closed.
	Running bool
	Limit   int
}

// Query returns the visibility query for the filter.
func (f ListFilter) Query() string {
	q := []string{`WorkflowType = "Rollout"`}
	if f.Fleet != "" {
		q = append(q, fmt.Sprintf("%s = %q", AttrFleet.GetName(), f.Fleet))
	}
	if closed, ok := closedStatus[rollout.State(f.State)]; ok {
		// Never a value of the search attribute: the workflow was closed from outside.
		q = append(q, fmt.Sprintf("ExecutionStatus = %q", closed))
	} else if f.State != "" {
		q = append(q, fmt.Sprintf("%s = %q", AttrState.GetName(), f.State))
		if !rollout.State(f.State).Done() {
			// A rollout terminated while Promoting still says Promoting in its attribute.
			q = append(q, `ExecutionStatus = "Running"`)
		}
	}
	if f.Commit != "" {
		q = append(q, fmt.Sprintf("%s STARTS_WITH %q", AttrCommit.GetName(), f.Commit))
	}
	if f.Running {
		q = append(q, `ExecutionStatus = "Running"`)
	}
	return strings.Join(q, " AND ")
}

// closedStatus is Temporal's execution status for each state of a rollout closed from outside.
var closedStatus = map[rollout.State]string{
	rollout.StateTerminated: "Terminated",
	rollout.StateTimedOut:   "TimedOut",
	rollout.StateCancelled:  "Canceled",
}

// List returns rollouts, newest first.
func (c *Client) List(ctx context.Context, f ListFilter) ([]Summary, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	var out []Summary
	err := c.each(ctx, f.Query(), min(limit, 1000), func(e *workflowpb.WorkflowExecutionInfo) bool {
		s := Summary{Rollout: e.GetExecution().GetWorkflowId(), Started: e.GetStartTime().AsTime(),
			Fleet: keyword(e, AttrFleet), Commit: keyword(e, AttrCommit), Wave: keyword(e, AttrWave), State: keyword(e, AttrState)}
		if e.GetCloseTime() != nil {
			s.Closed = e.GetCloseTime().AsTime()
		}
		// A rollout closed from outside kept the state it had: show how it really closed.
		if closed, ok := rollout.ClosedState(e.GetStatus().String()); ok && !rollout.State(s.State).Done() {
			s.State = string(closed)
		}
		out = append(out, s)
		return len(out) < limit
	})
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return out, nil
}

// each calls fn for the executions the visibility query matches, page by page, until fn
// returns false or the pages end.
func (c *Client) each(ctx context.Context, query string, pageSize int, fn func(*workflowpb.WorkflowExecutionInfo) bool) error {
	var token []byte
	for {
		resp, err := c.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: int32(pageSize), NextPageToken: token})
		if err != nil {
			return err
		}
		for _, e := range resp.GetExecutions() {
			if !fn(e) {
				return nil
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return nil
		}
	}
}

// keyword is the value of an execution's keyword search attribute, "" when unset.
func keyword(e *workflowpb.WorkflowExecutionInfo, key temporal.SearchAttributeKeyKeyword) string {
	var v string
	if p, ok := e.GetSearchAttributes().GetIndexedFields()[key.GetName()]; ok {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &v)
	}
	return v
}

// Resolve returns the ID of fleet's rollout of ref: a rollout ID as it is, a commit of at
// least IDChars hex digits as RolloutID, and a shorter prefix by the fleet's rollouts whose
// commit starts with it (an error when several do; the 7-digit ID of a rollout started before
// IDs held 12 when none does).
func (c *Client) Resolve(ctx context.Context, fleet, ref string) (string, error) {
	switch {
	case strings.Contains(ref, "/"):
		return ref, nil
	case len(ref) >= IDChars:
		return RolloutID(fleet, ref), nil
	}
	list, err := c.List(ctx, ListFilter{Fleet: fleet, Limit: 500})
	if err != nil {
		return "", err
	}
	var ids []string
	for _, s := range list {
		if strings.HasPrefix(s.Commit, ref) && !slices.Contains(ids, s.Rollout) {
			ids = append(ids, s.Rollout)
		}
	}
	switch len(ids) {
	case 0:
		return legacyRolloutID(fleet, ref), nil
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%s names several rollouts of fleet %s (%s): give more digits", ref, fleet, strings.Join(ids, ", "))
}

// Find returns the ID of the rollout ref names, in any fleet: a rollout or catch-up ID
// (catchup/<fleet>/<site>) as it is;
// "<fleet>/<commit>" as Resolve finds it in that fleet; a bare commit prefix (4 hex digits or
// more) by the rollouts whose commit starts with it, an error when none or several do.
func (c *Client) Find(ctx context.Context, ref string) (string, error) {
	if strings.HasPrefix(ref, "rollout/") || strings.HasPrefix(ref, "catchup/") {
		return ref, nil
	}
	if fleet, commit, ok := strings.Cut(ref, "/"); ok {
		return c.Resolve(ctx, fleet, commit)
	}
	if len(ref) < 4 || strings.Trim(strings.ToLower(ref), "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is neither a rollout ID (rollout/<fleet>/<commit>), <fleet>/<commit>, nor a commit prefix of 4 hex digits or more", ref)
	}
	list, err := c.List(ctx, ListFilter{Commit: strings.ToLower(ref), Limit: 50})
	if err != nil {
		return "", err
	}
	var ids []string
	for _, s := range list {
		if !slices.Contains(ids, s.Rollout) {
			ids = append(ids, s.Rollout)
		}
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no rollout of a commit starting with %s", ref)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%s names several rollouts (%s): give more digits, or <fleet>/%s", ref, strings.Join(ids, ", "), ref)
}

// Submit hands a commit to the fleet's coordinator (starting the coordinator if needed), which
// rolls it out when the fleet is free, by the plan's onNewCommit policy. It returns the ID the
// rollout has or will have. Submitting a commit twice is harmless.
func (c *Client) Submit(ctx context.Context, fleet FleetInput, commit string, trigger rollout.Trigger) (string, error) {
	_, err := c.c.SignalWithStartWorkflow(ctx, FleetID(fleet.Fleet), SignalCommit, CommitSignal{Commit: commit, Trigger: &trigger},
		client.StartWorkflowOptions{
			ID:                    FleetID(fleet.Fleet),
			TaskQueue:             c.queue(fleet.Fleet),
			StaticSummary:         fmt.Sprintf("coordinator of fleet %s: one rollout at a time", fleet.Fleet),
			TypedSearchAttributes: temporal.NewSearchAttributes(AttrFleet.ValueSet(fleet.Fleet)),
		}, Fleet, fleet)
	if err != nil {
		return "", fmt.Errorf("submit %s to fleet %s: %w", rollout.Short(commit), fleet.Fleet, err)
	}
	return RolloutID(fleet.Fleet, commit), nil
}

// EnsureFleet starts the fleet's coordinator unless it runs (with polling, when fleet.Poll is
// set). A coordinator that runs on another task queue than the one this client starts workflows
// on is an error: no worker of this configuration would ever run its tasks, nor the rollouts it
// starts (children inherit its queue).
func (c *Client) EnsureFleet(ctx context.Context, fleet FleetInput) error {
	queue := c.queue(fleet.Fleet)
	run, err := c.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       FleetID(fleet.Fleet),
		TaskQueue:                queue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("coordinator of fleet %s: one rollout at a time", fleet.Fleet),
		TypedSearchAttributes:    temporal.NewSearchAttributes(AttrFleet.ValueSet(fleet.Fleet)),
	}, Fleet, fleet)
	if err != nil {
		return fmt.Errorf("start the coordinator of fleet %s: %w", fleet.Fleet, err)
	}
	desc, err := c.c.DescribeWorkflow(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		return fmt.Errorf("describe the coordinator of fleet %s: %w", fleet.Fleet, err)
	}
	if runs := desc.TaskQueueName; runs != "" && runs != queue {
		return fmt.Errorf("the coordinator of fleet %s (%s) runs on task queue %q, and this worker polls %q: its rollouts would never run. "+
			"Serve it with --task-queue %q (releases before the queue per fleet used \"fleetwave\"), or let its rollouts end and terminate it "+
			"(temporal workflow terminate --workflow-id %s); the next push starts it again on %q",
			fleet.Fleet, FleetID(fleet.Fleet), runs, queue, runs, FleetID(fleet.Fleet), queue)
	}
	return nil
}

// EnsureSearchAttributes registers fleetwave's search attributes (Keyword) on the namespace
// unless they exist. Without them every rollout's first workflow task fails; when the
// credentials may not register them (Temporal Cloud API keys usually cannot), the error says
// how to do it by hand.
func (c *Client) EnsureSearchAttributes(ctx context.Context, namespace string) error {
	namespace = cmp.Or(namespace, client.DefaultNamespace)
	names, err := c.MissingSearchAttributes(ctx, namespace)
	if err != nil || len(names) == 0 {
		return err
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, name := range names {
		missing[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	if _, err := c.c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	}); err != nil {
		return fmt.Errorf("register search attributes on namespace %s: %w (%s)", namespace, err, manualSearchAttributes(namespace))
	}
	return nil
}

// MissingSearchAttributes lists fleetwave's search attributes the namespace lacks.
func (c *Client) MissingSearchAttributes(ctx context.Context, namespace string) ([]string, error) {
	namespace = cmp.Or(namespace, client.DefaultNamespace)
	have, err := c.c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("list search attributes of namespace %s: %w (%s)", namespace, err, manualSearchAttributes(namespace))
	}
	var missing []string
	for _, name := range SearchAttributes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// Workers returns the identities of the workers that polled fleet's task queue for workflow
// tasks in the last minutes (Temporal forgets a poller a few minutes after its last poll).
func (c *Client) Workers(ctx context.Context, fleet string) ([]string, error) {
	resp, err := c.c.DescribeTaskQueue(ctx, c.queue(fleet), enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err != nil {
		return nil, fmt.Errorf("describe task queue %s: %w", c.queue(fleet), err)
	}
	var out []string
	for _, p := range resp.GetPollers() {
		out = append(out, p.GetIdentity())
	}
	return out, nil
}

// ManualSearchAttributes says how to register fleetwave's search attributes by hand.
func ManualSearchAttributes(namespace string) string { return manualSearchAttributes(namespace) }

func manualSearchAttributes(namespace string) string {
	var cmds []string
	for _, name := range SearchAttributes {
		cmds = append(cmds, fmt.Sprintf("temporal operator search-attribute create --namespace %s --name %s --type Keyword", namespace, name))
	}
	return "register them with: " + strings.Join(cmds, "; ")
}

// SitesView is what Temporal knows of a fleet's sites: the commit of the fleet's latest
// rollout that succeeded (its target), and its running catch-ups, by site.
type SitesView struct {
	Target   string
	CatchUps map[string]CatchUpSummary
}

// CatchUpSummary is a running catch-up as the visibility store lists it: its ID, commit and
// site, and since when the site is unreachable while it is probed (zero: the catch-up
// promotes it).
type CatchUpSummary struct {
	ID, Site, Commit string
	OfflineSince     time.Time
}

// SitesView reads the fleet's target and running catch-ups from Temporal's visibility store.
func (c *Client) SitesView(ctx context.Context, fleet string) (SitesView, error) {
	view := SitesView{CatchUps: map[string]CatchUpSummary{}}
	succeeded, err := c.List(ctx, ListFilter{Fleet: fleet, State: string(rollout.StateSucceeded), Limit: 1000})
	if err != nil {
		return view, err
	}
	var latest time.Time
	for _, s := range succeeded {
		if s.Closed.After(latest) && s.Commit != "" {
			view.Target, latest = s.Commit, s.Closed
		}
	}
	catchUps, err := c.CatchUps(ctx, fleet)
	for _, cu := range catchUps {
		view.CatchUps[cu.Site] = cu
	}
	return view, err
}

// CatchUps lists the fleet's running catch-ups, from Temporal's visibility store (their memo).
func (c *Client) CatchUps(ctx context.Context, fleet string) ([]CatchUpSummary, error) {
	query := fmt.Sprintf("WorkflowType = %q AND %s = %q AND ExecutionStatus = \"Running\"", CatchUpType, AttrFleet.GetName(), fleet)
	dc := DataConverter()
	var out []CatchUpSummary
	err := c.each(ctx, query, 1000, func(e *workflowpb.WorkflowExecutionInfo) bool {
		var m CatchUpMemo
		if p, ok := e.GetMemo().GetFields()[memoCatchUp]; !ok || dc.FromPayload(p, &m) != nil || m.Site == "" {
			return true // not started far enough to say
		}
		out = append(out, CatchUpSummary{ID: e.GetExecution().GetWorkflowId(), Site: m.Site, Commit: keyword(e, AttrCommit), OfflineSince: m.OfflineSince})
		return true
	})
	if err != nil {
		return out, fmt.Errorf("list the catch-ups of fleet %s: %w", fleet, err)
	}
	return out, nil
}
