package workflows

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/fleetwave/fleetwave/rollout"
)

func TestDataConverterCompressesLargePayloadsOnly(t *testing.T) {
	dc := DataConverter()
	small := rollout.WaveStatus{Name: "canary", Sites: []rollout.SiteStatus{{Name: "ams-1", Verdict: rollout.VerdictHealthy}}}
	p, err := dc.ToPayload(small)
	if err != nil {
		t.Fatal(err)
	}
	if enc := string(p.GetMetadata()[converter.MetadataEncoding]); enc != converter.MetadataEncodingJSON {
		t.Errorf("small payload encoded as %q, want plain JSON (readable in the UI)", enc)
	}

	large := rollout.WaveStatus{Name: "rest"}
	for i := range 9000 {
		large.Sites = append(large.Sites, rollout.SiteStatus{Name: fmt.Sprintf("s%05d", i), Branch: fmt.Sprintf("sites/s%05d", i), Verdict: rollout.VerdictPending})
	}
	plain, err := converter.GetDefaultDataConverter().ToPayload(large)
	if err != nil {
		t.Fatal(err)
	}
	p, err = dc.ToPayload(large)
	if err != nil {
		t.Fatal(err)
	}
	if enc := string(p.GetMetadata()[converter.MetadataEncoding]); !strings.Contains(enc, "zlib") {
		t.Errorf("large payload encoded as %q, want zlib", enc)
	}
	if len(p.GetData())*5 > len(plain.GetData()) {
		t.Errorf("9,000 sites: %d bytes compressed from %d, want at least 5 times smaller", len(p.GetData()), len(plain.GetData()))
	}
	var back rollout.WaveStatus
	if err := dc.FromPayload(p, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(large, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// What the default converter wrote (histories recorded before) still reads.
	var old rollout.WaveStatus
	if err := dc.FromPayload(plain, &old); err != nil || len(old.Sites) != 9000 {
		t.Errorf("plain payload: %v, %d sites", err, len(old.Sites))
	}
}

// TestErrorMessageOfAGiveUp: an activity that ran out of retries says why its last attempt
// failed, not only that time ran out.
func TestErrorMessageOfAGiveUp(t *testing.T) {
	err := temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE, errors.New("dial tcp 10.0.0.7:443: connection refused"))
	if got, want := errorMessage(err), "timed out (ScheduleToClose); last attempt: dial tcp 10.0.0.7:443: connection refused"; got != want {
		t.Errorf("errorMessage = %q, want %q", got, want)
	}
}
