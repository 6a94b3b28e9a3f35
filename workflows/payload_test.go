package workflows

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.temporal.io/sdk/converter"

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
