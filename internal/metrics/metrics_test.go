package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// TestTemporalHandler: what workflows and activities emit reaches its Prometheus metric with
// the fleet label and the tags as labels; the SDK's activity metrics come out under
// fleetwave's names; every other SDK metric is dropped.
func TestTemporalHandler(t *testing.T) {
	s := New(nil, "demo")
	h := s.Temporal().WithTags(map[string]string{"namespace": "default", "task_queue": "fleetwave/demo"})
	h.WithTags(map[string]string{"state": "Succeeded"}).Counter(workflows.MetricRolloutsFinished).Inc(1)
	h.WithTags(map[string]string{"state": "Failed"}).Counter(workflows.MetricRolloutsFinished).Inc(2)
	h.WithTags(map[string]string{"wave": "canary", "result": "Succeeded"}).Timer(workflows.MetricWaveDuration).Record(90 * time.Second)
	h.WithTags(map[string]string{"check": "error-rate", "site": "ams-1", "result": "fail"}).Counter(activities.MetricGateResults).Inc(1)
	h.WithTags(map[string]string{"result": "written"}).Counter(workflows.MetricReverts).Inc(3)
	act := h.WithTags(map[string]string{"activity_type": "Promote", "workflow_type": "Wave"})
	act.Counter(sdkActivityFailed).Inc(1)
	act.Timer(sdkActivityLatency).Record(250 * time.Millisecond)
	h.Counter("temporal_request").Inc(1)
	h.Timer("temporal_workflow_task_execution_latency").Record(time.Second)
	h.Gauge("temporal_num_pollers").Update(3)

	want := `
# HELP fleetwave_rollouts_finished_total Rollouts that ended, by final state.
# TYPE fleetwave_rollouts_finished_total counter
fleetwave_rollouts_finished_total{fleet="demo",state="Failed"} 2
fleetwave_rollouts_finished_total{fleet="demo",state="Succeeded"} 1
# HELP fleetwave_reverts_total Site reverts, by result: written (a revert commit is on the site's branch), nothing (no promotion to revert), failed.
# TYPE fleetwave_reverts_total counter
fleetwave_reverts_total{fleet="demo",result="written"} 3
# HELP fleetwave_gate_results_total Health check measurements, by check, site and result (pass, fail, unknown).
# TYPE fleetwave_gate_results_total counter
fleetwave_gate_results_total{check="error-rate",fleet="demo",result="fail",site="ams-1"} 1
# HELP fleetwave_activity_failures_total Failed activity attempts, by activity type (Temporal retries them as their retry policy says).
# TYPE fleetwave_activity_failures_total counter
fleetwave_activity_failures_total{activity_type="Promote",fleet="demo"} 1
`
	if err := testutil.GatherAndCompare(s.Registry, strings.NewReader(want), workflows.MetricRolloutsFinished, workflows.MetricReverts,
		activities.MetricGateResults, "fleetwave_activity_failures_total"); err != nil {
		t.Error(err)
	}
	for name, labels := range map[string]string{
		workflows.MetricWaveDuration + "_count":     `fleet="demo",result="Succeeded",wave="canary"`,
		"fleetwave_activity_duration_seconds_count": `activity_type="Promote",fleet="demo"`,
	} {
		if got := gathered(t, s, name); got != "{"+labels+"} 1" {
			t.Errorf("%s: %s, want {%s} 1", name, got, labels)
		}
	}
	families, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "temporal_") {
			t.Errorf("an SDK metric went through: %s", f.GetName())
		}
	}
}

// gathered is the one series of the metric name as "{labels} value".
func gathered(t *testing.T, s *Set, name string) string {
	t.Helper()
	families, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			series := "{" + strings.Join(labels, ",") + "}"
			switch {
			case f.GetName() == name:
				out = append(out, fmt.Sprintf("%s %g", series, m.GetCounter().GetValue()))
			case f.GetName()+"_count" == name && m.GetHistogram() != nil:
				out = append(out, fmt.Sprintf("%s %d", series, m.GetHistogram().GetSampleCount()))
			}
		}
	}
	return strings.Join(out, "; ")
}

// TestObservePush: each push is counted by how it ended.
func TestObservePush(t *testing.T) {
	s := New(nil, "demo")
	for _, err := range []error{nil, nil, fmt.Errorf("push: %w", gitops.ErrNonFastForward), fmt.Errorf("x: %w", gitops.ErrPushRejected), errors.New("connection reset")} {
		s.ObservePush(gitops.PushStat{Branches: 3, Attempt: 1, Duration: 40 * time.Millisecond, Err: err})
	}
	for result, want := range map[string]float64{"ok": 2, "moved": 1, "rejected": 1, "error": 1} {
		if got := testutil.ToFloat64(s.pushes.WithLabelValues(result)); got != want {
			t.Errorf("pushes{result=%q} = %g, want %g", result, got, want)
		}
	}
	if got := gathered(t, s, "fleetwave_git_push_duration_seconds_count"); !strings.Contains(got, `result="ok"} 2`) {
		t.Errorf("push durations: %s", got)
	}
	var none *Set
	none.ObservePush(gitops.PushStat{}) // before the fleet is known: nothing, no panic
}

// TestProgress: the latest time in the status, or the end of the bake under way.
func TestProgress(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	st := rollout.Status{StartedAt: t0, State: rollout.StateBaking, Wave: "eu", Waves: []rollout.WaveStatus{
		{Name: "canary", State: rollout.StateSucceeded, StartedAt: t0.Add(time.Minute), FinishedAt: t0.Add(5 * time.Minute),
			Sites: []rollout.SiteStatus{{Name: "ams-1", UpdatedAt: t0.Add(4 * time.Minute)}}},
		{Name: "eu", State: rollout.StateConverging, StartedAt: t0.Add(6 * time.Minute),
			Sites: []rollout.SiteStatus{{Name: "fra-1", UpdatedAt: t0.Add(7 * time.Minute)}}},
	}}
	if got := Progress(st); !got.Equal(t0.Add(7 * time.Minute)) {
		t.Errorf("converging: %v, want the last observation at +7m", got)
	}
	st.Controls = []rollout.Control{{Action: "pause", At: t0.Add(8 * time.Minute)}}
	if got := Progress(st); !got.Equal(t0.Add(8 * time.Minute)) {
		t.Errorf("after a control: %v, want +8m", got)
	}
	st.Waves[1].BakeUntil = t0.Add(time.Hour)
	if got := Progress(st); !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("baking: %v, want the bake's end", got)
	}
}

// TestScrapeWithoutTemporal: with Temporal unreachable, /metrics still answers; the rollout
// gauges are absent.
func TestScrapeWithoutTemporal(t *testing.T) {
	tc, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	s := New(nil, "demo")
	s.WatchRollouts(workflows.NewClient(tc, ""), "demo")
	s.PushEvents.WithLabelValues("accepted").Inc()
	families, err := s.Registry.Gather()
	if err != nil {
		t.Fatalf("gather with Temporal unreachable: %v", err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	if !names["fleetwave_push_events_total"] || names["fleetwave_rollouts"] {
		t.Errorf("gathered %v", names)
	}
}

// TestRolloutGaugesAreCached: scrapes within CacheFor of one that asked Temporal get its
// values, so a scrape storm asks Temporal one round of questions per CacheFor.
func TestRolloutGaugesAreCached(t *testing.T) {
	tc := &mocks.Client{}
	lists := 0
	tc.On("ListWorkflow", mock.Anything, mock.Anything).Return(func(context.Context, *workflowservice.ListWorkflowExecutionsRequest) *workflowservice.ListWorkflowExecutionsResponse {
		lists++
		return &workflowservice.ListWorkflowExecutionsResponse{}
	}, nil)
	s := New(nil, "demo")
	s.WatchRollouts(workflows.NewClient(tc, ""), "demo")
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	s.rollouts.now = func() time.Time { return now }
	for range 5 {
		if _, err := s.Registry.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	// One round of questions is two lists: the open rollouts, and the running catch-ups.
	if lists != 2 {
		t.Errorf("5 scrapes at once listed %d times, want 2 (one round)", lists)
	}
	now = now.Add(CacheFor)
	if _, err := s.Registry.Gather(); err != nil {
		t.Fatal(err)
	}
	if lists != 4 {
		t.Errorf("a scrape CacheFor later listed %d times in all, want 4 (two rounds)", lists)
	}
}
