package httplist

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// A list whose length the server announces is read into one buffer of that
// size: io.ReadAll's growing chunks and final copy held it about twice.
func TestReadBodyAnnouncedLength(t *testing.T) {
	data := bytes.Repeat([]byte(`"44.2.2.2",`), 100_000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := readBody(bytes.NewReader(data), int64(len(data)), 1<<30)
	runtime.ReadMemStats(&after)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > uint64(len(data))+64<<10 {
		t.Errorf("allocated %d bytes for a %d-byte body", n, len(data))
	}
}

// The announced length is a hint, never trusted: a body longer or shorter
// than announced, or one beyond the limit, reads as it is.
func TestReadBodyLengthIsAHint(t *testing.T) {
	for _, tt := range []struct {
		body      string
		announced int64
		max       int64
		want      string
		tooLarge  bool
	}{
		{"abcdef", 3, 100, "abcdef", false},
		{"abc", 100, 100, "abc", false},
		{"abc", -1, 100, "abc", false},
		{"abcdef", 6, 5, "", true},
		{"abcdef", 1 << 40, 5, "", true},
		{"abcdef", 2, 5, "", true},
		{"", 0, 5, "", false},
	} {
		got, err := readBody(strings.NewReader(tt.body), tt.announced, tt.max)
		if tt.tooLarge {
			if err == nil || !strings.Contains(err.Error(), "larger than") {
				t.Errorf("%q announced %d, max %d: err = %v, want too large", tt.body, tt.announced, tt.max, err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("%q announced %d: got %q, %v", tt.body, tt.announced, got, err)
		}
	}
}
