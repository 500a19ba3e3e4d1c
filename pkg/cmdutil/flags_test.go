package cmdutil

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/pdsafelist/pdsafelist/pkg/config"
)

// A flag the user gave beats the file; a flag left at its default does not,
// and the file's explicit zero survives.
func TestFlagsOverrideFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pdsafelist.yaml")
	if err := os.WriteFile(path, []byte("grace: 0s\nregion: eu\nmax_ttl: 2h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("sync", pflag.ContinueOnError)
	fs.String("config", "", "")
	sf := NewSettingFlags()
	Bind(sf, "region", func(s *config.Settings) *string { return &s.Region }, fs.StringVar, "")
	Bind(sf, "grace", func(s *config.Settings) *time.Duration { return &s.Grace }, fs.DurationVar, "")
	Bind(sf, "max-ttl", func(s *config.Settings) *time.Duration { return &s.MaxTTL }, fs.DurationVar, "")
	if err := fs.Parse([]string{"--config", path, "--max-ttl", "3h"}); err != nil {
		t.Fatal(err)
	}
	if d := fs.Lookup("grace").DefValue; d != config.Defaults().Grace.String() {
		t.Errorf("--grace default %s, want the settings' default %s", d, config.Defaults().Grace)
	}
	f := &Factory{IO: &IOStreams{Out: io.Discard, ErrOut: io.Discard}, SettingFlags: sf,
		Global: &GlobalOptions{ConfigPath: path, Flags: fs}, Getenv: func(string) string { return "" }}
	s, err := f.Settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.Grace != 0 {
		t.Errorf("grace = %s, want the file's 0 (the unchanged --grace default must not win)", s.Grace)
	}
	if s.Region != "eu" {
		t.Errorf("region = %q, want the file's eu", s.Region)
	}
	if s.MaxTTL != 3*time.Hour {
		t.Errorf("max ttl = %s, want --max-ttl 3h over the file's 2h", s.MaxTTL)
	}
}
