package workflows

import (
	"testing"
	"time"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/runbook"
)

// signalCounter counts the progress signals rollouts receive.
type signalCounter struct {
	interceptor.WorkerInterceptorBase
	n *int
}

func (c *signalCounter) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	in := &signalCounterInbound{n: c.n}
	in.Next = next
	return in
}

type signalCounterInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	n *int
}

func (c *signalCounterInbound) HandleSignal(ctx workflow.Context, in *interceptor.HandleSignalInput) error {
	if in.SignalName == signalWaveProgress {
		*c.n++
	}
	return c.Next.HandleSignal(ctx, in)
}

// TestFlappingSiteKeepsTheRolloutsHistoryBounded: a site whose check fails every other round
// through a 6-hour bake (720 rounds at 30s) used to send its rollout a progress signal every
// round; coalesced, the changes that decide nothing (its failure count, its measurements) reach
// the rollout at most every runbook.ProgressEvery, so a day of such a bake costs the rollout at most
// 288 signals, whatever the interval.
func TestFlappingSiteKeepsTheRolloutsHistoryBounded(t *testing.T) {
	plan := oneWavePlan(2, "%d", "bake: 6h", "health: {interval: 30s, failureThreshold: 3}")
	for _, tt := range []struct {
		version  workflow.Version
		min, max int
	}{
		{1, 0, 6*60/int(runbook.ProgressEvery/time.Minute) + 10},
		{workflow.DefaultVersion, 700, 800},
	} {
		env := newEnv(t)
		signals := 0
		env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{VoteOrigins(testVoteKey), &signalCounter{n: &signals}}})
		if tt.version == workflow.DefaultVersion {
			env.OnGetVersion(versionProgressCoalesced, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
		}
		f := newFakeFleet(t, env, plan)
		f.flapping = map[string]bool{"s1": true}
		st, err := run(t, env)
		if err != nil || st.State != rollout.StateSucceeded {
			t.Fatalf("version %d: rollout %s (%v)", tt.version, st.State, err)
		}
		t.Logf("version %d: %d progress signals for %d rounds of the flapping site", tt.version, signals, f.observed["s1"])
		if signals < tt.min || signals > tt.max {
			t.Errorf("version %d: %d progress signals, want %d to %d", tt.version, signals, tt.min, tt.max)
		}
	}
}
