package ec2

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pdsafelist/pdsafelist/pkg/sink"
)

// tags is listed in --sink help, so it must work there: k=v pairs separated
// by commas, the same map the config file takes.
func TestTagsOnSinkFlag(t *testing.T) {
	reg := sink.Registry{"ec2": GroupFactory}
	if !strings.Contains(GroupFactory.Help, "tags") {
		t.Skip("tags not offered on --sink")
	}
	spec, err := reg.ParseFlag("ec2:sg-0123456789abcdef0?tags=team=net,env=prod")
	if err != nil {
		t.Fatal(err)
	}
	var o GroupOptions
	if err := spec.Decode(&o); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"team": "net", "env": "prod"}, map[string]string(o.Tags)); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	spec, _ = reg.ParseFlag("ec2:sg-0123456789abcdef0?tags=team")
	if err := spec.Decode(&o); err == nil || !strings.Contains(err.Error(), "tags") || !strings.Contains(err.Error(), "key=value") {
		t.Errorf("bad tags: got %v, want an error naming tags and key=value", err)
	}
}
