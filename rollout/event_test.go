package rollout

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// bigStatus is a rollout of 1,000 sites in 3 waves, every site measured by two checks, one
// site degraded and reverted.
func bigStatus() Status {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	st := Status{Rollout: "rollout/demo/1a2b3c4", Fleet: "demo", Commit: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", State: StateFailed}
	for w, n := range []int{1, 99, 900} {
		ws := WaveStatus{Name: fmt.Sprintf("wave-%d", w), Index: w, State: StateSucceeded}
		for i := range n {
			name := fmt.Sprintf("site-%d-%03d", w, i)
			ws.Sites = append(ws.Sites, SiteStatus{Name: name, Branch: "sites/" + name, Verdict: VerdictHealthy,
				Promotion: "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432", Promoted: true, Previous: "0123456789abcdef0123456789abcdef01234567",
				Revision: "sites/" + name + "@sha1:9f8e7d6c5b4a39281706f5e4d3c2b1a098765432", UpdatedAt: t0,
				Checks: []CheckResult{
					{Name: "error-rate", OK: true, Value: 0.001, Threshold: "<= 0.01", At: t0},
					{Name: "smoke", OK: true, Value: 200, Threshold: "== 200", At: t0},
				}})
		}
		st.Waves = append(st.Waves, ws)
	}
	s := &st.Waves[1].Sites[7]
	s.Verdict, s.Revert, s.Message = VerdictReverted, "aaaabbbbccccddddeeeeffff0000111122223333", "check error-rate failed (value 0.25, want <= 0.01), 3 times in a row"
	return st
}

func TestDigestKeepsWhatNotificationsShow(t *testing.T) {
	st := bigStatus()
	d := st.Digest()
	if len(d.Waves) != 3 || len(d.Waves[2].Sites) != 900 || !cmp.Equal(d.Waves[2].Sites[0], SiteStatus{Name: "site-2-000", Verdict: VerdictHealthy}) {
		t.Errorf("digest of a healthy site: %+v", d.Waves[2].Sites[0])
	}
	want := SiteStatus{Name: "site-1-007", Verdict: VerdictReverted, Revert: "aaaabbbbccccddddeeeeffff0000111122223333",
		Message: "check error-rate failed (value 0.25, want <= 0.01), 3 times in a row", Checks: st.Waves[1].Sites[7].Checks}
	if diff := cmp.Diff(want, d.Waves[1].Sites[7]); diff != "" {
		t.Errorf("digest of the reverted site (-want +got):\n%s", diff)
	}
	// The digest is a copy: the rollout's own status is untouched.
	if st.Waves[2].Sites[0].Promotion == "" {
		t.Error("Digest changed the status it was taken from")
	}
}

// BenchmarkDigest reports the size of one Slack notification's status for 1,000 sites, whole
// and as the digest the workflow sends.
func BenchmarkDigest(b *testing.B) {
	st := bigStatus()
	full, _ := json.Marshal(st)
	var digest []byte
	for b.Loop() {
		digest, _ = json.Marshal(st.Digest())
	}
	b.ReportMetric(float64(len(full)), "status-bytes")
	b.ReportMetric(float64(len(digest)), "digest-bytes")
}
