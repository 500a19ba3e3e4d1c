package dns

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pdsafelist/pdsafelist/pkg/testutil/dnstest"
)

// At debug every query is logged with its server and answer.
func TestQueriesLoggedAtDebug(t *testing.T) {
	srv := dnstest.StartT(t, dnstest.Zone{"events.example.com": {A: []string{"193.0.2.7"}}})
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := New(Config{Nameservers: []string{srv.Addr()}, Attempts: 1, QueryTimeout: 300 * time.Millisecond, Logger: log})
	if res := r.Source("events.example.com").Resolve(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	out := buf.String()
	for _, want := range []string{"dns query", "name=events.example.com.", "type=A", "type=AAAA", "server=" + srv.Addr(), "193.0.2.7", "rcode=NOERROR"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
