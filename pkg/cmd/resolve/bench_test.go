package resolve_test

import (
	"context"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/cmd/root"
	"github.com/pdsafelist/pdsafelist/pkg/cmdutil"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/standin"
)

// latency is added to every DNS answer of the stand-in.
const latency = 50 * time.Millisecond

// BenchmarkResolveAllSetsDelayed resolves every default set in both regions
// through the CLI against the stand-in, whose DNS answers each take 50 ms.
// Sources run concurrently, so a run should cost about one round trip plus
// one per CNAME hop the server does not chase: the x-latency metric is the
// wall time as a multiple of the latency (target <= 2.2).
func BenchmarkResolveAllSetsDelayed(b *testing.B) {
	_, flags := standin.StartT(b, standin.Options{Snapshot: "../../../testdata/snapshot", Delay: latency})
	args := append([]string{"resolve", "-o", "json", "--region", "all"}, flags...)
	b.ResetTimer()
	for b.Loop() {
		streams, _, errOut := cmdutil.Test()
		if code := root.Execute(context.Background(), root.NewFactory(streams), args); code != 0 {
			b.Fatalf("resolve exit %d: %s", code, errOut)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(latency), "x-latency")
}
