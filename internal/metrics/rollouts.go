package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// scrapeTimeout bounds what one scrape asks Temporal; statusesPerScrape how many open rollouts'
// status it reads (a fleet promotes one rollout at a time; the others wait or are held).
const (
	scrapeTimeout     = 5 * time.Second
	statusesPerScrape = 20
)

// CacheFor is how long the rollout gauges of one scrape serve the next ones: a scrape asks
// Temporal up to statusesPerScrape+1 times, and /metrics may be scraped by several Prometheus
// replicas, or by anyone who can reach it.
const CacheFor = 15 * time.Second

// WatchRollouts exports, at each scrape, the fleet's open rollouts as Temporal knows them:
//   - fleetwave_rollouts{state}: how many are in each state (the FleetwaveState search
//     attribute);
//   - fleetwave_rollout_progress_timestamp_seconds{rollout, state}: the latest time in its
//     status (a step, a measurement, a vote, a control), or the end of the bake it waits for;
//     a working rollout whose time stands still is stuck (deploy/install/alerts.yaml);
//   - fleetwave_site_unknown_since_timestamp_seconds{rollout, wave, site}: since when a site
//     of the running wave has been Unknown;
//   - fleetwave_sites_behind: how many sites a rollout that succeeded deferred, and their
//     catch-ups have not brought to its commit yet (running catch-ups);
//   - fleetwave_site_offline_seconds{site}: for how long each of them, while its catch-up
//     probes it, has been unreachable.
//
// Every replica exports the same values: aggregate them with max, not sum. Scrapes within
// CacheFor of one that asked Temporal get its values.
func (s *Set) WatchRollouts(fw *workflows.Client, fleet string) {
	s.rollouts = &rolloutsCollector{fw: fw, fleet: fleet, now: time.Now,
		open: prometheus.NewDesc("fleetwave_rollouts", "Open rollouts of the fleet, by state.", []string{"state"}, nil),
		progress: prometheus.NewDesc("fleetwave_rollout_progress_timestamp_seconds",
			"The latest time in an open rollout's status (a step, a measurement, a vote, a control), or the end of the bake it waits for.",
			[]string{"rollout", "state"}, nil),
		unknown: prometheus.NewDesc("fleetwave_site_unknown_since_timestamp_seconds",
			"Since when a site of an open rollout's running wave has been Unknown.", []string{"rollout", "wave", "site"}, nil),
		behind: prometheus.NewDesc("fleetwave_sites_behind",
			"Sites deferred by a rollout that succeeded whose catch-up still runs: not on the fleet's last succeeded commit yet.", nil, nil),
		offline: prometheus.NewDesc("fleetwave_site_offline_seconds",
			"For how long a deferred site, probed by its catch-up, has been unreachable.", []string{"site"}, nil),
	}
	s.reg.MustRegister(s.rollouts)
}

type rolloutsCollector struct {
	fw                      *workflows.Client
	fleet                   string
	open, progress, unknown *prometheus.Desc
	behind, offline         *prometheus.Desc
	now                     func() time.Time

	// mu serializes scrapes, so that concurrent ones share one round of questions; cached
	// are the metrics of the last round, asked at cachedAt.
	mu       sync.Mutex
	cached   []prometheus.Metric
	cachedAt time.Time
}

func (c *rolloutsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.progress
	ch <- c.unknown
	ch <- c.behind
	ch <- c.offline
}

func (c *rolloutsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.cachedAt.IsZero() || now.Sub(c.cachedAt) >= CacheFor {
		c.cached, c.cachedAt = c.ask(), now
	}
	for _, m := range c.cached {
		ch <- m
	}
}

// ask reads the fleet's open rollouts from Temporal, as metrics.
func (c *rolloutsCollector) ask() []prometheus.Metric {
	var out []prometheus.Metric
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	list, err := c.fw.List(ctx, workflows.ListFilter{Fleet: c.fleet, Running: true, Limit: 1000})
	if err != nil {
		// Temporal unreachable: these gauges are absent from this scrape, and the rest of
		// /metrics still answers (an invalid metric would fail the whole scrape).
		return nil
	}
	if catchUps, err := c.fw.CatchUps(ctx, c.fleet); err == nil {
		out = append(out, prometheus.MustNewConstMetric(c.behind, prometheus.GaugeValue, float64(len(catchUps))))
		for _, cu := range catchUps {
			if !cu.OfflineSince.IsZero() {
				out = append(out, prometheus.MustNewConstMetric(c.offline, prometheus.GaugeValue, c.now().Sub(cu.OfflineSince).Seconds(), cu.Site))
			}
		}
	}
	byState := map[string]int{}
	for _, r := range list {
		byState[r.State]++
	}
	for state, n := range byState {
		out = append(out, prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(n), state))
	}
	for i, r := range list {
		if i == statusesPerScrape {
			break
		}
		st, err := c.fw.Status(ctx, r.Rollout)
		if err != nil {
			continue // no worker answers the query: the rollout still counts above
		}
		if at := Progress(st); !at.IsZero() {
			out = append(out, prometheus.MustNewConstMetric(c.progress, prometheus.GaugeValue, seconds(at), st.Rollout, string(st.State)))
		}
		for _, w := range st.Waves {
			if w.Name != st.Wave || w.State.Done() {
				continue
			}
			for _, site := range w.Sites {
				if !site.UnknownSince.IsZero() {
					out = append(out, prometheus.MustNewConstMetric(c.unknown, prometheus.GaugeValue, seconds(site.UnknownSince), st.Rollout, w.Name, site.Name))
				}
			}
		}
	}
	return out
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Progress is the latest time recorded in a rollout's status (its start, a control, and each
// wave's start, convergence, end, votes and site observations), or the end of the bake it
// waits for, which may be ahead: a rollout does nothing visible while it bakes.
func Progress(st rollout.Status) time.Time {
	latest := st.StartedAt
	later := func(t time.Time) {
		if t.After(latest) {
			latest = t
		}
	}
	for _, c := range st.Controls {
		later(c.At)
	}
	for _, w := range st.Waves {
		later(w.StartedAt)
		later(w.ConvergedAt)
		later(w.FinishedAt)
		later(w.BakeUntil)
		if w.Approval != nil {
			for _, v := range w.Approval.Votes {
				later(v.At)
			}
		}
		for _, s := range w.Sites {
			later(s.UpdatedAt)
		}
	}
	return latest
}
