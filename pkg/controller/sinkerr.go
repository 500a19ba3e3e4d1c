package controller

import "strings"

// sinkError says what was being done to which sink. Sinks usually start
// their errors with their own name already; that prefix is dropped so the
// name appears once ("read X: reason", not "read X: X: reason").
type sinkError struct {
	msg string
	err error
}

func (e *sinkError) Error() string { return e.msg }
func (e *sinkError) Unwrap() error { return e.err }

func wrapSink(verb, name string, err error) error {
	reason := strings.TrimPrefix(err.Error(), name+": ")
	return &sinkError{msg: verb + " " + name + ": " + reason, err: err}
}
