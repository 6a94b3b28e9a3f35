// Package metrics is what a fleetwave server exports on /metrics: its own counters (push
// events, Slack requests, git pushes), the metrics its workflows and activities emit through
// Temporal's metrics handler (rollouts finished, wave durations, reverts, gate results,
// activity failures), and the state of the fleet's open rollouts, read from Temporal at each
// scrape. Every fleetwave_* metric but the Slack counter carries the label fleet.
// docs/operating.md lists them.
package metrics

import (
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/workflows"
)

// Names of the metrics the Temporal SDK emits that the server exports under its own names.
const (
	sdkActivityFailed  = "temporal_activity_execution_failed"
	sdkActivityLatency = "temporal_activity_execution_latency"
)

// Registry is what one server's /metrics serves: the process's metrics, the Slack counter
// (one Slack app per server), and the Sets of its fleets.
type Registry struct {
	*prometheus.Registry
	// SlackEvents counts Slack requests and actions by event.
	SlackEvents *prometheus.CounterVec
}

// NewRegistry makes a server's registry.
func NewRegistry() *Registry {
	r := &Registry{Registry: prometheus.NewRegistry()}
	r.SlackEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetwave_slack_events_total",
		Help: "Slack requests refused or malformed, and Slack actions accepted, refused (no right) or failed."}, []string{"event"})
	r.MustRegister(r.SlackEvents, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Set is the metrics of one fleet of a server.
type Set struct {
	// Registry is what /metrics serves, shared by the server's fleets.
	Registry *prometheus.Registry
	// PushEvents counts requests to /hooks/git by result; SlackEvents is the server's.
	PushEvents, SlackEvents *prometheus.CounterVec

	pushes      *prometheus.CounterVec
	pushSeconds *prometheus.HistogramVec
	// routes are the metrics the Temporal handler feeds, by the name emitted.
	routes map[string]route
	reg    prometheus.Registerer
	// rollouts exports the fleet's open rollouts (WatchRollouts).
	rollouts *rolloutsCollector
}

// route is where the Temporal handler sends one emitted metric: a counter or a histogram
// (of seconds) with these labels, taken from the emitted tags ("" where a tag is missing).
type route struct {
	labels  []string
	counter *prometheus.CounterVec
	hist    *prometheus.HistogramVec
}

// New makes the metrics of fleet on the server's registry r (nil: a registry of its own).
func New(r *Registry, fleet string) *Set {
	if r == nil {
		r = NewRegistry()
	}
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"fleet": fleet}, r.Registry)
	s := &Set{Registry: r.Registry, SlackEvents: r.SlackEvents, reg: reg, routes: map[string]route{}}
	s.PushEvents = s.counter("fleetwave_push_events_total", "Push events received on /hooks/git, by result.", "result")
	s.pushes = s.counter("fleetwave_git_pushes_total",
		`Pushes of promotion and revert commits, by result: ok, moved (a branch moved: the write plans again), rejected (refused for good), error (network or server).`, "result")
	s.pushSeconds = s.histogram("fleetwave_git_push_duration_seconds", "Time one push of promotion or revert commits took, by result.",
		prometheus.ExponentialBucketsRange(0.01, 120, 14), "result")

	s.routeCounter(workflows.MetricRolloutsFinished, "Rollouts that ended, by final state.", "state")
	s.routeHistogram(workflows.MetricWaveDuration, "Time from a wave's start to its end, by wave and result (its final state, or Lost).",
		prometheus.ExponentialBucketsRange(1, 7*24*3600, 16), "wave", "result")
	s.routeCounter(workflows.MetricReverts,
		"Site reverts, by result: written (a revert commit is on the site's branch), nothing (no promotion to revert), failed.", "result")
	s.routeCounter(activities.MetricGateResults, "Health check measurements, by check, site and result (pass, fail, unknown).",
		"check", "site", "result")
	s.routes[sdkActivityFailed] = route{labels: []string{"activity_type"},
		counter: s.counter("fleetwave_activity_failures_total", "Failed activity attempts, by activity type (Temporal retries them as their retry policy says).", "activity_type")}
	s.routes[sdkActivityLatency] = route{labels: []string{"activity_type"},
		hist: s.histogram("fleetwave_activity_duration_seconds", "Time activity attempts took on this worker, by activity type.",
			prometheus.ExponentialBucketsRange(0.005, 3600, 16), "activity_type")}
	return s
}

func (s *Set) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	s.reg.MustRegister(c)
	return c
}

func (s *Set) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	s.reg.MustRegister(h)
	return h
}

func (s *Set) routeCounter(name, help string, labels ...string) {
	s.routes[name] = route{labels: labels, counter: s.counter(name, help, labels...)}
}

func (s *Set) routeHistogram(name, help string, buckets []float64, labels ...string) {
	s.routes[name] = route{labels: labels, hist: s.histogram(name, help, buckets, labels...)}
}

// ObservePush counts one push (for gitops.WithPushObserver); a nil Set counts nothing.
func (s *Set) ObservePush(p gitops.PushStat) {
	if s == nil {
		return
	}
	result := "ok"
	switch {
	case p.Err == nil:
	case errors.Is(p.Err, gitops.ErrNonFastForward):
		result = "moved"
	case errors.Is(p.Err, gitops.ErrPushRejected):
		result = "rejected"
	default:
		result = "error"
	}
	s.pushes.WithLabelValues(result).Inc()
	s.pushSeconds.WithLabelValues(result).Observe(p.Duration.Seconds())
}

// Temporal is the metrics handler for the Temporal client (client.Options.MetricsHandler): it
// turns the metrics fleetwave's workflows and activities emit, and the SDK's activity failures
// and latencies, into the Set's metrics, and drops every other metric of the SDK.
func (s *Set) Temporal() client.MetricsHandler { return handler{s: s} }

type handler struct {
	s    *Set
	tags map[string]string
}

func (h handler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	for k, v := range h.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	return handler{s: h.s, tags: merged}
}

func (h handler) values(r route) []string {
	v := make([]string, len(r.labels))
	for i, l := range r.labels {
		v[i] = h.tags[l]
	}
	return v
}

func (h handler) Counter(name string) client.MetricsCounter {
	r, ok := h.s.routes[name]
	if !ok || r.counter == nil {
		return client.MetricsNopHandler.Counter(name)
	}
	c := r.counter.WithLabelValues(h.values(r)...)
	return counterFunc(func(n int64) { c.Add(float64(n)) })
}

func (h handler) Gauge(name string) client.MetricsGauge { return client.MetricsNopHandler.Gauge(name) }

func (h handler) Timer(name string) client.MetricsTimer {
	r, ok := h.s.routes[name]
	if !ok || r.hist == nil {
		return client.MetricsNopHandler.Timer(name)
	}
	o := r.hist.WithLabelValues(h.values(r)...)
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

type counterFunc func(int64)

func (f counterFunc) Inc(n int64) { f(n) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

// Names lists the fleetwave_* metrics of a Set, sorted (for docs and tests).
func (s *Set) Names() []string {
	families, _ := s.Registry.Gather()
	seen := map[string]bool{}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "fleetwave_") {
			seen[f.GetName()] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
