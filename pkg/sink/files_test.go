package sink

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

type fileSink struct {
	name  string
	files []string
}

func (s fileSink) Name() string                                { return s.name }
func (s fileSink) Current(context.Context) (plan.State, error) { return plan.State{}, nil }
func (s fileSink) Apply(context.Context, plan.SinkPlan) error  { return nil }
func (s fileSink) Files() []string                             { return s.files }

type apiSink struct{ fileSink }

func (apiSink) Files() {}

func TestCheckDistinctFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	// Files reached through a symlink are written through it, so they are
	// the file it names, existing or not yet.
	if err := os.WriteFile(filepath.Join(dir, "real", "y.nft"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real/y.nft", filepath.Join(dir, "y.nft")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real", "z.nft"), filepath.Join(dir, "z.nft")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	tests := []struct {
		name  string
		sinks []Sink
		want  string // a part of the error; empty for none
	}{
		{"distinct", []Sink{
			fileSink{"iptables-file:a.v4", []string{"a.v4", "a.v6"}},
			fileSink{"nftables:b.nft", []string{"b.nft"}},
		}, ""},
		{"derived twin", []Sink{
			fileSink{"iptables-file:X.v4", []string{"X.v4", "X.v6"}},
			fileSink{"nftables:X.v6", []string{"X.v6"}},
		}, "iptables-file:X.v4 and nftables:X.v6 both write " + filepath.Join(dir, "X.v6")},
		{"relative and absolute", []Sink{
			fileSink{"nftables:out.nft", []string{"out.nft"}},
			fileSink{"nftables:" + dir + "/./out.nft", []string{dir + "/./out.nft"}},
		}, "both write"},
		{"symlinked directory", []Sink{
			fileSink{"nftables:link/x.nft", []string{"link/x.nft"}},
			fileSink{"nftables:real/x.nft", []string{"real/x.nft"}},
		}, "both write " + filepath.Join(dir, "real", "x.nft")},
		{"missing directory under a symlink", []Sink{
			fileSink{"nftables:link/new/x.nft", []string{"link/new/x.nft"}},
			fileSink{"nftables:real/new/x.nft", []string{"real/new/x.nft"}},
		}, "both write " + filepath.Join(dir, "real", "new", "x.nft")},
		{"symlinked file", []Sink{
			fileSink{"nftables:y.nft", []string{"y.nft"}},
			fileSink{"template:real/y.nft", []string{"real/y.nft"}},
		}, "nftables:y.nft and template:real/y.nft both write " + filepath.Join(dir, "real", "y.nft")},
		{"symlink to a file not yet written", []Sink{
			fileSink{"template:link/z.nft", []string{"link/z.nft"}},
			fileSink{"nftables:z.nft", []string{"z.nft"}},
		}, "both write " + filepath.Join(dir, "real", "z.nft")},
		{"one sink twice", []Sink{
			fileSink{"iptables-file:r.v4", []string{"r.v4", "./r.v4"}},
		}, "iptables-file:r.v4 writes " + filepath.Join(dir, "r.v4") + " twice"},
		{"not a file writer", []Sink{
			apiSink{fileSink{"ec2:sg-1", []string{"x"}}},
			fileSink{"nftables:x", []string{"x"}},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDistinctFiles(tt.sinks)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), filepath.Clean(tt.want))):
				t.Fatalf("err = %v, want it to contain %q", err, filepath.Clean(tt.want))
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("not one line: %q", err)
			}
		})
	}
}
