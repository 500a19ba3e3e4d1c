package sinktest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// IAMStatement is one statement of the shipped IAM policy, its Action
// read whether it is one string or a list.
type IAMStatement struct {
	Effect    string
	Actions   []string
	Resource  json.RawMessage
	Condition map[string]map[string]json.RawMessage
}

// IAMPolicy reads scripts/aws/iam-policy.json, the policy the README
// ships, for the AWS sinks' tests that every call they make is allowed.
func IAMPolicy(t testing.TB) []IAMStatement {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(here), "..", "..", "..", "scripts", "aws", "iam-policy.json")
	data, err := os.ReadFile(path)
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
	out := make([]IAMStatement, 0, len(doc.Statement))
	for _, st := range doc.Statement {
		var one string
		var many []string
		if json.Unmarshal(st.Action, &one) == nil {
			many = []string{one}
		} else if err := json.Unmarshal(st.Action, &many); err != nil {
			t.Fatalf("iam-policy.json: statement action: %v", err)
		}
		out = append(out, IAMStatement{Effect: st.Effect, Actions: many, Resource: st.Resource, Condition: st.Condition})
	}
	return out
}
