package cmdutil

import (
	"bytes"
	"log/slog"
	"testing"
)

// Text logs are one line each, for people: the level as a word, the
// message, then key=value pairs, quoted where they hold spaces.
func TestTextHandler(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(newTextHandler(&b, slog.LevelInfo)).With("sink", "nftables:x")
	log.Debug("hidden")
	log.Info("config file read", "path", "/etc/pdsafelist/pdsafelist.yaml")
	log.Warn("state set aside", "err", "bad json")
	log.WithGroup("dns").Error("query failed", "server", "127.0.0.1:53")
	want := `info: config file read sink=nftables:x path=/etc/pdsafelist/pdsafelist.yaml
warning: state set aside sink=nftables:x err="bad json"
error: query failed sink=nftables:x dns.server=127.0.0.1:53
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
