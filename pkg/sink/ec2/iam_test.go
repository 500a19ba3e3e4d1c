package ec2

import (
	"reflect"
	"slices"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

// Every EC2 call the sinks can make is allowed by the shipped IAM policy,
// so a new call cannot ship without its permission.
func TestIAMPolicyCoversEveryCall(t *testing.T) {
	var allowed []string
	for _, st := range sinktest.IAMPolicy(t) {
		if st.Effect == "Allow" {
			allowed = append(allowed, st.Actions...)
		}
	}
	api := reflect.TypeFor[API]()
	for i := range api.NumMethod() {
		if action := "ec2:" + api.Method(i).Name; !slices.Contains(allowed, action) {
			t.Errorf("iam-policy.json does not allow %s", action)
		}
	}
	// Rules and lists are created with tags, which needs CreateTags.
	if !slices.Contains(allowed, "ec2:CreateTags") {
		t.Error("iam-policy.json does not allow ec2:CreateTags")
	}
}
