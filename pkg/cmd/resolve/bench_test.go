package resolve_test

import (
	"context"
	"os"
	"path/filepath"
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
	s, err := standin.Start(standin.Options{Snapshot: "../../../testdata/snapshot", Delay: latency})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ca := filepath.Join(b.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CAPEM(), 0o644); err != nil {
		b.Fatal(err)
	}
	args := append([]string{"resolve", "-o", "json", "--region", "all"}, s.Flags(ca)...)
	b.ResetTimer()
	for b.Loop() {
		streams, _, errOut := cmdutil.Test()
		if code := root.Execute(context.Background(), root.NewFactory(streams), args); code != 0 {
			b.Fatalf("resolve exit %d: %s", code, errOut)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(latency), "x-latency")
}
