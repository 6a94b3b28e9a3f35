package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// gitTimeout bounds one attempt of a git activity: after it, an attempt whose workflow is gone
// can no longer push.
const gitTimeout = 2 * time.Minute

// How long git activities retry a git server that is away (transport errors, 5xx): loading a
// plan and promoting give up after gitRetries and fail the rollout (whose scope then reverts
// what it promoted); reverting, and taking a commit in, go on for a day, since giving up there
// would leave a bad commit running or lose a push. A refusal a retry cannot fix (a hook, a
// protected branch, missing rights, a conflict) is not retried at all.
const (
	gitRetries     = 30 * time.Minute
	gitRetriesLong = 24 * time.Hour
)

// gitOptions are for activities that talk to the git server: an unreachable server is retried
// with backoff up to a minute apart, for at most within; the pending activity's last failure
// says why the rollout waits.
func gitOptions(ctx workflow.Context, summary string, within time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    gitTimeout,
		ScheduleToCloseTimeout: within,
		HeartbeatTimeout:       heartbeatTimeout,
		Summary:                summary,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	})
}

// heartbeatTimeout is how soon Temporal retries, on another worker, an attempt of a git or
// convergence activity whose worker stopped heartbeating (killed, partitioned).
const heartbeatTimeout = 20 * time.Second

// convergeOptions are for the long poll that waits for sites to apply a commit; it heartbeats,
// so a lost worker is noticed within heartbeatTimeout and the retry keeps the original deadline.
func convergeOptions(ctx workflow.Context, timeout time.Duration, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: timeout + 2*time.Minute,
		HeartbeatTimeout:    heartbeatTimeout,
		Summary:             summary,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
		},
	})
}

// observeOptions are for one health round.
func observeOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		Summary:             summary,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Second,
			MaximumAttempts:    5,
		},
	})
}

// errorMessage is the innermost message of an activity or child workflow error, without the
// SDK's wrapping ("activity error (type: ..., scheduledEventID: ...)").
func errorMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		msg := "timed out (" + timeout.TimeoutType().String() + ")"
		if cause := errors.Unwrap(timeout); cause != nil {
			// The last attempt's failure says why it took so long.
			msg += "; last attempt: " + errorMessage(cause)
		}
		return msg
	}
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) {
		return "canceled"
	}
	return err.Error()
}

// policyOptions runs the policy check: a local activity (compiling and evaluating policies is
// CPU work on the worker), bounded and retried a few times.
func policyOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumAttempts: 3,
		},
	})
}

// slackOptions are for Slack calls: a few quick tries, then the rollout goes on without them.
func slackOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		Summary:             summary,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumAttempts:    3,
		},
	})
}
