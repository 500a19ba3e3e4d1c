package standin

import (
	"bytes"
	"testing"
)

// Hang-ups in the handshake are dropped; anything else the server logs
// still shows.
func TestQuietHangups(t *testing.T) {
	var b bytes.Buffer
	q := quietHangups{&b}
	for _, l := range []string{
		"2026/11/26 06:35:45 http: TLS handshake error from 127.0.0.1:36624: read tcp 127.0.0.1:35279->127.0.0.1:36624: read: connection reset by peer\n",
		"2026/11/26 06:35:45 http: TLS handshake error from 127.0.0.1:36625: EOF\n",
	} {
		if n, err := q.Write([]byte(l)); n != len(l) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	kept := "2026/11/26 06:35:45 http: TLS handshake error from 127.0.0.1:36626: remote error: tls: bad certificate\n"
	_, _ = q.Write([]byte(kept))
	if b.String() != kept {
		t.Errorf("logged %q, want only %q", b.String(), kept)
	}
}
