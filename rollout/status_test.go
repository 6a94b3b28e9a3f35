package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRevisionHash(t *testing.T) {
	for in, want := range map[string]string{
		"main@sha1:abc123":        "abc123",
		"sites/ams-1@sha1:abc123": "abc123",
		"sha1:abc123":             "abc123",
		"abc123":                  "abc123",
		"":                        "",
	} {
		if got := RevisionHash(in); got != want {
			t.Errorf("RevisionHash(%q) = %q, want %q", in, got, want)
		}
	}
	if got := FormatRevision("sites/a", "abc"); got != "sites/a@sha1:abc" {
		t.Errorf("FormatRevision = %q", got)
	}
}

func TestObserveHealth(t *testing.T) {
	h := Health{FailureThreshold: 3, UnknownTimeout: 5 * time.Minute}
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	good := SiteState{Reachable: true, Revision: "sites/a@sha1:c1", Ready: true, Checks: []CheckResult{{Name: "sim", OK: true}}}
	bad := SiteState{Reachable: true, Revision: "sites/a@sha1:c1", Ready: true,
		Checks: []CheckResult{{Name: "error-rate", OK: false, Value: 0.2, Threshold: "<= 0.01"}}}
	down := SiteState{Reachable: false, Message: "connection refused"}
	stalled := SiteState{Reachable: true, Revision: "sites/a@sha1:c1", Stalled: true, Message: "kustomize build failed"}
	old := SiteState{Reachable: true, Revision: "sites/a@sha1:c0", Ready: true}
	reconciling := SiteState{Reachable: true, Revision: "sites/a@sha1:c1", Reconciling: true, Message: "Progressing: Reconciliation in progress"}
	suspended := SiteState{Reachable: true, Revision: "sites/a@sha1:c1", Ready: true, Suspended: true, Message: "ReconciliationSucceeded: Applied revision"}
	noMetrics := SiteState{Reachable: true, Revision: "sites/a@sha1:c1", Ready: true,
		Checks: []CheckResult{{Name: "error-rate", Unknown: true, Message: "prometheus: connection refused"}}}
	mixed := SiteState{Reachable: true, Revision: "sites/a@sha1:c1", Ready: true,
		Checks: []CheckResult{{Name: "error-rate", Unknown: true, Message: "prometheus: connection refused"}, {Name: "smoke", Value: 503, Threshold: "status 200"}}}

	tests := []struct {
		name        string
		seq         []SiteState
		step        time.Duration
		want        Verdict
		wantFails   int
		wantMessage string
	}{
		{"healthy", []SiteState{good, good}, time.Minute, VerdictHealthy, 0, ""},
		{"two failures stay healthy", []SiteState{bad, bad}, time.Minute, VerdictHealthy, 2, "2 of 3 failures"},
		{"failure streak resets", []SiteState{bad, bad, good, bad, bad}, time.Minute, VerdictHealthy, 2, ""},
		{"three in a row degrade", []SiteState{bad, bad, bad}, time.Minute, VerdictDegraded, 3,
			"check error-rate failed (value 0.2, want <= 0.01), 3 times in a row"},
		{"degraded is final", []SiteState{bad, bad, bad, good}, time.Minute, VerdictDegraded, 3, ""},
		{"stalled counts as failure", []SiteState{stalled, stalled, stalled}, time.Minute, VerdictDegraded, 3, "flux stalled: kustomize build failed"},
		{"old revision counts as failure", []SiteState{old}, time.Minute, VerdictHealthy, 1, `applied revision "sites/a@sha1:c0" instead of c1`},
		{"reconciling is unknown, not healthy", []SiteState{reconciling}, time.Minute, VerdictUnknown, 0, "flux reconciling: Progressing: Reconciliation in progress"},
		{"a periodic reconcile between healthy rounds passes", []SiteState{good, reconciling, good}, time.Minute, VerdictHealthy, 0, ""},
		{"reconciling past unknownTimeout degrades", []SiteState{good, reconciling, reconciling, reconciling}, 3 * time.Minute, VerdictDegraded, 0,
			"unknown for 6m0s (unknownTimeout 5m0s): flux reconciling: Progressing"},
		{"a suspended kustomization is unknown, not healthy", []SiteState{good, suspended}, time.Minute, VerdictUnknown, 0, "flux kustomization suspended"},
		{"suspended past unknownTimeout degrades", []SiteState{suspended, suspended, suspended}, 3 * time.Minute, VerdictDegraded, 0, "unknown for 6m0s"},
		{"unreachable is unknown", []SiteState{down, down}, time.Minute, VerdictUnknown, 0, "unreachable: connection refused"},
		{"unreachable past unknownTimeout degrades", []SiteState{down, down, down}, 3 * time.Minute, VerdictDegraded, 0, "unreachable for 6m0s"},
		{"unmeasurable check is unknown, not healthy", []SiteState{noMetrics, noMetrics}, time.Minute, VerdictUnknown, 0,
			"check error-rate could not measure: prometheus: connection refused"},
		{"unmeasurable check past unknownTimeout degrades", []SiteState{good, noMetrics, noMetrics, noMetrics}, 3 * time.Minute, VerdictDegraded, 0,
			"unknown for 6m0s (unknownTimeout 5m0s): check error-rate could not measure"},
		{"a definite failure counts while another check cannot measure", []SiteState{mixed, mixed, mixed}, time.Minute, VerdictDegraded, 3,
			"check smoke failed (value 503, want status 200), 3 times in a row"},
		{"reachable again clears unknown", []SiteState{down, down, good, down}, 3 * time.Minute, VerdictUnknown, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := SiteStatus{Name: "a", Verdict: VerdictConverging}
			now := t0
			for _, st := range tt.seq {
				s.ObserveHealth(st, "c1", h, now)
				now = now.Add(tt.step)
			}
			if s.Verdict != tt.want || s.Failures != tt.wantFails {
				t.Errorf("verdict %s failures %d, want %s %d (message %q)", s.Verdict, s.Failures, tt.want, tt.wantFails, s.Message)
			}
			if !strings.Contains(s.Message, tt.wantMessage) {
				t.Errorf("message %q does not contain %q", s.Message, tt.wantMessage)
			}
		})
	}
}

func TestRevertOrder(t *testing.T) {
	site := func(name string, v Verdict, promoted bool) SiteStatus {
		return SiteStatus{Name: name, Verdict: v, Promoted: promoted}
	}
	waves := []WaveStatus{
		{Name: "canary", Sites: []SiteStatus{site("a", VerdictHealthy, true)}},
		{Name: "eu", Sites: []SiteStatus{site("b", VerdictHealthy, true), site("c", VerdictHealthy, false), site("d", VerdictHealthy, true)}},
		{Name: "us", Sites: []SiteStatus{site("e", VerdictDegraded, true), site("f", VerdictHealthy, true), site("g", VerdictPending, false)}},
	}
	tests := []struct {
		scope string
		want  []RevertSet
	}{
		{ScopeSite, []RevertSet{{Wave: "us", Sites: []string{"e"}}}},
		{ScopeWave, []RevertSet{{Wave: "us", Sites: []string{"e", "f"}}}},
		{ScopeAll, []RevertSet{{Wave: "us", Sites: []string{"e", "f"}}, {Wave: "eu", Sites: []string{"b", "d"}}, {Wave: "canary", Sites: []string{"a"}}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, RevertOrder(waves, 2, tt.scope)); diff != "" {
			t.Errorf("RevertOrder(%s) (-want +got):\n%s", tt.scope, diff)
		}
	}
	waves[2].Sites[0].Revert = "r1"
	if got := RevertOrder(waves, 2, ScopeSite); len(got) != 0 {
		t.Errorf("already reverted site listed again: %v", got)
	}
}

// TestRevertOrderUnsettled: a wave whose workflow ended without a verdict (terminated) may have
// promoted any of its sites; wave and all scopes list each one not yet reverted, and git says
// which hold a promotion. Scope site names no degraded site, so it lists none.
func TestRevertOrderUnsettled(t *testing.T) {
	waves := []WaveStatus{
		{Name: "canary", Sites: []SiteStatus{{Name: "a", Verdict: VerdictHealthy, Promoted: true}}},
		{Name: "eu", Unsettled: true, Sites: []SiteStatus{{Name: "b", Verdict: VerdictPending}, {Name: "c", Verdict: VerdictPending}, {Name: "d", Revert: "r1", Promoted: true}}},
	}
	tests := []struct {
		scope string
		want  []RevertSet
	}{
		{ScopeSite, nil},
		{ScopeWave, []RevertSet{{Wave: "eu", Sites: []string{"b", "c"}}}},
		{ScopeAll, []RevertSet{{Wave: "eu", Sites: []string{"b", "c"}}, {Wave: "canary", Sites: []string{"a"}}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, RevertOrder(waves, 1, tt.scope)); diff != "" {
			t.Errorf("RevertOrder(%s) (-want +got):\n%s", tt.scope, diff)
		}
	}
}

func TestCompact(t *testing.T) {
	small := WaveStatus{Name: "canary", Sites: []SiteStatus{{Name: "a", Verdict: VerdictHealthy, Promotion: "p", Checks: []CheckResult{{Name: "c", OK: true}}}}}
	if diff := cmp.Diff(small, small.Compact()); diff != "" {
		t.Errorf("a small wave changed (-want +got):\n%s", diff)
	}
	large := WaveStatus{Name: "rest"}
	for i := range CompactAbove + 1 {
		large.Sites = append(large.Sites, SiteStatus{Name: fmt.Sprintf("s%04d", i), Branch: "b", Verdict: VerdictHealthy, Promoted: true,
			Promotion: "p", Previous: "q", Revision: "b@sha1:p", Message: "applied p", Checks: []CheckResult{{Name: "c", OK: true}}})
	}
	large.Sites[7] = SiteStatus{Name: "s0007", Branch: "b", Verdict: VerdictReverted, Promoted: true, Promotion: "p", Revert: "r", Message: "reverted"}
	got := Status{Waves: []WaveStatus{large}}.Compact().Waves[0]
	if want := (SiteStatus{Name: "s0000", Branch: "b", Verdict: VerdictHealthy, Promoted: true}); !cmp.Equal(want, got.Sites[0]) {
		t.Errorf("healthy site compacted to %+v, want %+v", got.Sites[0], want)
	}
	if !cmp.Equal(large.Sites[7], got.Sites[7]) {
		t.Errorf("reverted site compacted to %+v, want it whole", got.Sites[7])
	}
	if large.Sites[0].Promotion != "p" {
		t.Error("Compact changed its input")
	}
}

func TestChangesAndApply(t *testing.T) {
	before := WaveStatus{Name: "eu", State: StateBaking, Sites: []SiteStatus{
		{Name: "a", Verdict: VerdictHealthy, Promotion: "p", Checks: []CheckResult{{Name: "err", OK: true, Value: 0.01}}},
		{Name: "b", Verdict: VerdictHealthy, Promotion: "p"},
	}}
	after := WaveStatus{Name: "eu", State: StateBaking, Sites: slices.Clone(before.Sites)}
	if _, ok := Changes(before, after); ok {
		t.Error("no change reported as one")
	}
	after.Sites[1].Verdict, after.Sites[1].Message = VerdictDegraded, "check failed"
	after.Sites[0].Checks = []CheckResult{{Name: "err", OK: true, Value: 0.02}} // a small wave reports new values
	c, ok := Changes(before, after)
	if !ok || len(c.Sites) != 2 || c.Sites[1].Verdict != VerdictDegraded {
		t.Fatalf("change %+v, %v", c, ok)
	}
	w := before
	w.Sites = slices.Clone(before.Sites)
	after.State, after.Message = StateFailed, "site b degraded"
	c, _ = Changes(before, after)
	w.Apply(c)
	if diff := cmp.Diff(after, w); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}

	// A large wave: a new value of a passing check is no change; a failing check is, and its
	// healthy sites travel compacted.
	large := WaveStatus{Name: "rest", State: StateBaking}
	for i := range CompactAbove + 1 {
		large.Sites = append(large.Sites, SiteStatus{Name: fmt.Sprintf("s%04d", i), Verdict: VerdictConverging, Promotion: "p",
			Checks: []CheckResult{{Name: "err", OK: true, Value: 0.01}}})
	}
	next := large
	next.Sites = slices.Clone(large.Sites)
	next.Sites[3].Checks = []CheckResult{{Name: "err", OK: true, Value: 0.05}}
	if _, ok := Changes(large, next); ok {
		t.Error("a new value of a passing check in a large wave reported")
	}
	next.Sites[4].Verdict = VerdictHealthy
	next.Sites[5].Checks = []CheckResult{{Name: "err", OK: false, Value: 0.5}}
	c, _ = Changes(large, next)
	if len(c.Sites) != 2 || !cmp.Equal(c.Sites[0], SiteStatus{Name: "s0004", Verdict: VerdictHealthy}) || c.Sites[1].Name != "s0005" {
		t.Errorf("large wave change: %+v", c.Sites)
	}
}

// FuzzRevision: Flux revisions in any shape parse without a panic, and a revision fleetwave
// formats reads back as its hash.
func FuzzRevision(f *testing.F) {
	for _, s := range []string{"sites/ams-1@sha1:1111111111111111111111111111111111111111", "sha1:abc", "main@abc", "", "@", ":", "a@b:c@d"} {
		f.Add(s, "sites/x", "0123456789abcdef0123456789abcdef01234567")
	}
	f.Fuzz(func(t *testing.T, rev, branch, hash string) {
		_ = RevisionHash(rev)
		_ = Short(rev)
		if strings.ContainsAny(hash, ":@") || strings.Contains(branch, ":") {
			return
		}
		if got := RevisionHash(FormatRevision(branch, hash)); got != hash {
			t.Errorf("RevisionHash(FormatRevision(%q, %q)) = %q", branch, hash, got)
		}
	})
}

// A site whose branch moved on after the promotion (someone pushed on top) runs the promotion
// too, when the activity found the applied revision contains it.
func TestAppliedContains(t *testing.T) {
	st := SiteState{Site: "a", Reachable: true, Ready: true, Revision: FormatRevision("sites/a", "theirs"), Contains: "promo"}
	if !st.Applied("promo") || !st.Converged("promo") || !st.Applied("theirs") || st.Applied("other") {
		t.Errorf("Applied: promo %v theirs %v other %v", st.Applied("promo"), st.Applied("theirs"), st.Applied("other"))
	}
	st.Reachable = false
	if st.Applied("promo") {
		t.Error("an unreachable site applied something")
	}
}
