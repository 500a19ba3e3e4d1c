package wafv2

import (
	"reflect"
	"testing"

	"github.com/pdsafelist/pdsafelist/pkg/sink/sinktest"
)

// Every WAFv2 call the sink can make is allowed by the shipped IAM policy,
// so a new call cannot ship without its permission.
func TestIAMPolicyCoversEveryCall(t *testing.T) {
	allowed := map[string]bool{}
	// Changes must be scoped: no wafv2 write on "*" or without a tag
	// condition.
	for _, st := range sinktest.IAMPolicy(t) {
		if st.Effect != "Allow" {
			continue
		}
		for _, a := range st.Actions {
			allowed[a] = true
			if a == "wafv2:UpdateIPSet" || a == "wafv2:CreateIPSet" || a == "wafv2:TagResource" {
				if string(st.Resource) == `"*"` || st.Condition["StringEquals"] == nil {
					t.Errorf("%s is allowed on %s without a tag condition", a, st.Resource)
				}
			}
		}
	}
	api := reflect.TypeFor[API]()
	for i := range api.NumMethod() {
		if action := "wafv2:" + api.Method(i).Name; !allowed[action] {
			t.Errorf("iam-policy.json does not allow %s", action)
		}
	}
	// CreateIPSet with tags needs TagResource.
	if !allowed["wafv2:TagResource"] {
		t.Error("iam-policy.json does not allow wafv2:TagResource")
	}
	if allowed["wafv2:DeleteIPSet"] {
		t.Error("the policy allows deleting IP sets, which the sink never does")
	}
}
