package workflows

import (
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/rollout"
)

// startNotes starts the coroutine that posts the rollout's Slack thread, one event at a time
// in order, so the rollout itself never waits for Slack. It runs on a disconnected context so
// a cancelled rollout still reports its end.
func (r *rolloutRun) startNotes(ctx workflow.Context, channel string) {
	r.notifying, r.channel, r.approvalTS = true, channel, map[string]string{}
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer func() { r.notesDone = true }()
		var slack *activities.Slack
		for {
			if workflow.Await(ctx, func() bool { return len(r.notes) > 0 || r.notesClosed }) != nil || len(r.notes) == 0 {
				return
			}
			ev := r.notes[0]
			r.notes = r.notes[1:]
			in := activities.NotifyInput{Channel: r.channel, Thread: r.thread, Event: ev, Status: r.status.Digest()}
			if ev.Kind == rollout.EventApprovalDecided {
				in.Update = r.approvalTS[ev.Wave]
			}
			var res activities.NotifyResult
			err := workflow.ExecuteActivity(slackOptions(ctx, strings.TrimSpace("slack: "+ev.Kind+" "+ev.Wave)), slack.Notify, in).Get(ctx, &res)
			switch {
			case err != nil:
				workflow.GetLogger(ctx).Warn("cannot post to Slack; the rollout goes on", "rollout", r.status.Rollout, "error", err)
				continue
			case res.Skipped:
				r.notifying, r.notes = false, nil
				return
			}
			r.channel, r.thread = res.Channel, res.Thread
			if ev.Kind == rollout.EventApprovalRequested {
				r.approvalTS[ev.Wave] = res.TS
			}
		}
	})
}

// note queues an event for the rollout's Slack thread.
func (r *rolloutRun) note(kind, wave string) {
	if r.notifying {
		r.notes = append(r.notes, rollout.Event{Kind: kind, Wave: wave})
	}
}

// finishNotes reports the end (EventFinished, or EventCancelled) and gives the thread a
// bounded time to catch up, even when the workflow was cancelled.
func (r *rolloutRun) finishNotes(ctx workflow.Context, kind string) {
	// approvalTS is made when the coroutine starts: without it there is no thread to finish.
	if r.approvalTS == nil || r.notesClosed {
		return
	}
	// When Slack is behind (slow or down, each event may take 48 s of tries), only the
	// decisions (their buttons must go) and the end are worth the wait; the header shows the rest.
	if len(r.notes) > maxQueuedAtEnd {
		r.notes = slices.DeleteFunc(r.notes, func(e rollout.Event) bool { return e.Kind != rollout.EventApprovalDecided })
	}
	r.note(kind, "")
	r.notesClosed = true
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	if ok, err := workflow.AwaitWithTimeout(ctx, notesGrace, func() bool { return r.notesDone }); err != nil || !ok {
		workflow.GetLogger(ctx).Warn("the Slack thread did not catch up", "rollout", r.status.Rollout, "error", err)
	}
}

// maxQueuedAtEnd is how many queued events a finished rollout still posts in full: the last
// wave's end normally is still in the queue when the rollout ends.
const maxQueuedAtEnd = 2

// notesGrace bounds how long a finished rollout waits for its Slack thread.
const notesGrace = 2 * time.Minute
