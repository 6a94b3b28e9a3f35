package workflows

import (
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// notifier posts a rollout's Slack thread: the events queued for it, where the thread is, and
// the approval request messages to rewrite once decided. It is the rollout's only Slack state;
// the zero value posts nothing.
type notifier struct {
	rollout string
	// status returns the rollout's status digest at the time of a post.
	status func() rollout.Status
	// on is true while the plan names a channel and Slack is configured.
	on              bool
	queue           []rollout.Event
	closed, done    bool
	channel, thread string
	approvalTS      map[string]string
}

// start starts the coroutine that posts the thread, one event at a time in order, so the
// rollout itself never waits for Slack. It runs on a disconnected context so a cancelled
// rollout still reports its end.
func (n *notifier) start(ctx workflow.Context, rolloutID, channel string, status func() rollout.Status) {
	n.rollout, n.status = rolloutID, status
	n.on, n.channel, n.approvalTS = true, channel, map[string]string{}
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer func() { n.done = true }()
		var slack *activities.Slack
		for {
			if workflow.Await(ctx, func() bool { return len(n.queue) > 0 || n.closed }) != nil || len(n.queue) == 0 {
				return
			}
			ev := n.queue[0]
			n.queue = n.queue[1:]
			in := activities.NotifyInput{Channel: n.channel, Thread: n.thread, Event: ev, Status: n.status()}
			if ev.Kind == rollout.EventApprovalDecided {
				in.Update = n.approvalTS[ev.Wave]
			}
			var res activities.NotifyResult
			err := workflow.ExecuteActivity(slackOptions(ctx, strings.TrimSpace("slack: "+ev.Kind+" "+ev.Wave)), slack.Notify, in).Get(ctx, &res)
			switch {
			case err != nil:
				workflow.GetLogger(ctx).Warn("cannot post to Slack; the rollout goes on", "rollout", n.rollout, "error", err)
				continue
			case res.Skipped:
				n.on, n.queue = false, nil
				return
			}
			n.channel, n.thread = res.Channel, res.Thread
			if ev.Kind == rollout.EventApprovalRequested {
				n.approvalTS[ev.Wave] = res.TS
			}
		}
	})
}

// note queues an event for the thread.
func (n *notifier) note(kind, wave string) {
	if n.on {
		n.queue = append(n.queue, rollout.Event{Kind: kind, Wave: wave})
	}
}

// finish reports the end (EventFinished, or EventCancelled) and gives the thread a bounded
// time to catch up, even when the workflow was cancelled.
func (n *notifier) finish(ctx workflow.Context, kind string) {
	// approvalTS is made when the coroutine starts: without it there is no thread to finish.
	if n.approvalTS == nil || n.closed {
		return
	}
	// When Slack is behind (slow or down, each event may take 48 s of tries), only the
	// decisions (their buttons must go) and the end are worth the wait; the header shows the rest.
	if len(n.queue) > maxQueuedAtEnd {
		n.queue = slices.DeleteFunc(n.queue, func(e rollout.Event) bool { return e.Kind != rollout.EventApprovalDecided })
	}
	n.note(kind, "")
	n.closed = true
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	if ok, err := workflow.AwaitWithTimeout(ctx, notesGrace, func() bool { return n.done }); err != nil || !ok {
		workflow.GetLogger(ctx).Warn("the Slack thread did not catch up", "rollout", n.rollout, "error", err)
	}
}

// maxQueuedAtEnd is how many queued events a finished rollout still posts in full: the last
// wave's end normally is still in the queue when the rollout ends.
const maxQueuedAtEnd = 2

// notesGrace bounds how long a finished rollout waits for its Slack thread.
const notesGrace = 2 * time.Minute
