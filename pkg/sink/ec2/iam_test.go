package ec2

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"testing"
)

// Every EC2 call the sinks can make is allowed by the shipped IAM policy,
// so a new call cannot ship without its permission.
func TestIAMPolicyCoversEveryCall(t *testing.T) {
	data, err := os.ReadFile("../../../scripts/aws/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Statement []struct {
			Effect string
			Action json.RawMessage
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	var allowed []string
	for _, st := range doc.Statement {
		var one string
		var many []string
		if json.Unmarshal(st.Action, &one) == nil {
			many = []string{one}
		} else if err := json.Unmarshal(st.Action, &many); err != nil {
			t.Fatalf("statement action: %v", err)
		}
		if st.Effect == "Allow" {
			allowed = append(allowed, many...)
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
