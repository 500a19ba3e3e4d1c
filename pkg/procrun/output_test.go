package procrun_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/procrun"
)

// The test binary doubles as a command that writes its output the way nft
// lists a set: many writes of a few bytes each.
func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv("PROCRUN_SMALL_WRITES")); err == nil {
		for i := range n {
			_, _ = fmt.Fprintf(os.Stdout, "44.%d.%d.%d,\n", i>>16&255, i>>8&255, i&255)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func smallWrites(n int) []string {
	return []string{"env", "PROCRUN_SMALL_WRITES=" + strconv.Itoa(n), os.Args[0]}
}

// Every byte of many small writes arrives, in order, and a second Run
// starts from an empty output.
func TestManySmallWrites(t *testing.T) {
	for _, n := range []int{0, 1, 20000} {
		out, err := procrun.Run(context.Background(), smallWrites(n), nil)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		for i := range n {
			want = fmt.Appendf(want, "44.%d.%d.%d,\n", i>>16&255, i>>8&255, i&255)
		}
		if string(out) != string(want) {
			t.Errorf("%d writes: got %d bytes, want %d", n, len(out), len(want))
		}
	}
}

// BenchmarkSmallWrites100k reports this process's own CPU time to take in
// 100,000 small writes (self-cpu-ms/op): the cost of reading a command's
// output, apart from the command's own work.
func BenchmarkSmallWrites100k(b *testing.B) {
	var self time.Duration
	for b.Loop() {
		c0 := selfCPU()
		if _, err := procrun.Run(context.Background(), smallWrites(100000), nil); err != nil {
			b.Fatal(err)
		}
		self += selfCPU() - c0
	}
	b.ReportMetric(float64(self.Milliseconds())/float64(b.N), "self-cpu-ms/op")
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
