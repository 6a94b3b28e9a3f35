package workflows

import (
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

// compressAbove is the size above which a payload is stored compressed. Smaller payloads stay
// plain JSON, readable in the Temporal UI as they are; the large ones (the plan of a fleet of
// thousands of sites, the status of a wave of thousands) are long lists of similar names that
// compress several times over, which keeps them under Temporal's payload and history limits.
const compressAbove = 32 << 10

// DataConverter is how fleetwave encodes what it passes through Temporal: JSON, with payloads
// over 32 KiB compressed by zlib (the SDK's codec, encoding "binary/zlib"). Workers and every
// client (the CLI, serve, Slack) must use it, or they cannot read a large rollout's status:
// set it as client.Options.DataConverter. It reads plain payloads too, so histories written
// before it replay unchanged.
func DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), largeCodec{zlib: converter.NewZlibCodec(converter.ZlibCodecOptions{})})
}

// FailureConverter encodes failures with DataConverter, so the statuses that failed rollouts
// and waves carry as details are compressed like every other large payload. Set it as
// client.Options.FailureConverter beside DataConverter.
func FailureConverter() converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: DataConverter()})
}

// largeCodec compresses the payloads over compressAbove.
type largeCodec struct{ zlib converter.PayloadCodec }

func (c largeCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		out[i] = p
		if len(p.GetData()) <= compressAbove {
			continue
		}
		enc, err := c.zlib.Encode([]*commonpb.Payload{p})
		if err != nil {
			return payloads, err
		}
		out[i] = enc[0]
	}
	return out, nil
}

// Decode uncompresses zlib payloads; the others pass through.
func (c largeCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return c.zlib.Decode(payloads)
}
