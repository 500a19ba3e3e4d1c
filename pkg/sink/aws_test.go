package sink

import (
	"errors"
	"testing"

	"github.com/aws/smithy-go"
)

// Every AWS sink's error is one line naming the call: a missing
// credential chain by its hint, an API error by its code.
func TestWrapAWS(t *testing.T) {
	if WrapAWS("DescribeX", nil) != nil {
		t.Fatal("nil wrapped")
	}
	chain := errors.New("failed to refresh cached credentials,\nno EC2 IMDS role found")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&NoCredentialsError{Err: chain}, "UpdateIPSet: " + (&NoCredentialsError{}).Error()},
		{&smithy.GenericAPIError{Code: "WAFOptimisticLockException", Message: "changed\nsince"}, "UpdateIPSet: WAFOptimisticLockException: changed; since"},
		{chain, "UpdateIPSet: failed to refresh cached credentials, no EC2 IMDS role found"},
	} {
		err := WrapAWS("UpdateIPSet", tc.err)
		if err.Error() != tc.want {
			t.Errorf("got %q\nwant %q", err, tc.want)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%q does not unwrap to its cause", err)
		}
	}
}
