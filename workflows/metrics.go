package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/fleetwave/fleetwave/rollout"
)

// Metrics the workflows emit through workflow.GetMetricsHandler, which emits nothing while a
// history is replayed: each is counted once, on the worker that ran the step. serve turns them
// into Prometheus metrics (internal/metrics), with the fleet as a label.
const (
	// MetricRolloutsFinished counts rollouts that ended, by final state (tag "state").
	MetricRolloutsFinished = "fleetwave_rollouts_finished_total"
	// MetricWaveDuration is the time from a wave's start to its end, by wave and result (tags
	// "wave", "result": the wave's final state, or "Lost").
	MetricWaveDuration = "fleetwave_wave_duration_seconds"
	// MetricReverts counts site reverts, by result (tag "result"): "written" (a revert commit
	// is on the site's branch), "nothing" (the branch held no promotion of the rollout),
	// "failed" (the revert could not be written).
	MetricReverts = "fleetwave_reverts_total"
)

func countFinished(ctx workflow.Context, state rollout.State) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"state": string(state)}).Counter(MetricRolloutsFinished).Inc(1)
}

func recordWave(ctx workflow.Context, wave, result string, d time.Duration) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"wave": wave, "result": result}).Timer(MetricWaveDuration).Record(d)
}

func countReverts(ctx workflow.Context, result string, n int) {
	if n > 0 {
		workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"result": result}).Counter(MetricReverts).Inc(int64(n))
	}
}
