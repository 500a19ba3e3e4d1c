package wafv2

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// Every WAFv2 call the sink can make is allowed by the shipped IAM policy,
// so a new call cannot ship without its permission.
func TestIAMPolicyCoversEveryCall(t *testing.T) {
	data, err := os.ReadFile("../../../scripts/aws/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Statement []struct {
			Effect    string
			Action    json.RawMessage
			Resource  json.RawMessage
			Condition map[string]map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	allowed := map[string]bool{}
	// Changes must be scoped: no wafv2 write on "*" or without a tag
	// condition.
	for _, st := range doc.Statement {
		var one string
		var many []string
		if json.Unmarshal(st.Action, &one) == nil {
			many = []string{one}
		} else if err := json.Unmarshal(st.Action, &many); err != nil {
			t.Fatalf("statement action: %v", err)
		}
		if st.Effect != "Allow" {
			continue
		}
		for _, a := range many {
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
