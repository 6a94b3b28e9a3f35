package rollout

// The watch: once a wave succeeded, its sites stay observed until the rollout ends (plan
// health.watch: rollout), against their promotion and under the plan's checks, by the same
// rules as the wave's bake. A site that degrades fails the rollout (WatchDegraded), which
// reverts by its rollback scope.

// Watched reports whether the watch observes the site: it runs its wave's promotion and is not
// decided (degraded or reverted). An Evidence wave's health rounds observe the same sites.
func (s SiteStatus) Watched() bool {
	return s.Promotion != "" && (s.Verdict == VerdictHealthy || s.Verdict == VerdictUnknown)
}

// WatchedSites lists the sites of the wave the watch observes.
func (w WaveStatus) WatchedSites() []string {
	var out []string
	for _, s := range w.Sites {
		if s.Watched() {
			out = append(out, s.Name)
		}
	}
	return out
}

// KeepPromotions gives the sites that a compacted status left without their promotion the one
// live had (the same wave, as its progress reports built it).
func (w *WaveStatus) KeepPromotions(live WaveStatus) {
	if len(live.Sites) != len(w.Sites) {
		return
	}
	w.Sites = append([]SiteStatus(nil), w.Sites...)
	for i := range w.Sites {
		if s := &w.Sites[i]; s.Promotion == "" && live.Sites[i].Name == s.Name {
			s.Promotion = live.Sites[i].Promotion
		}
	}
}

// Passed reports whether the site's last health round was clean: Flux ready at the
// promotion, every check measured and within its threshold, and no failure streak.
func (s SiteStatus) Passed() bool {
	return s.Verdict == VerdictHealthy && s.Failures == 0 && s.UnknownSince.IsZero()
}
