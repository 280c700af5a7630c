package reprise

import (
	"errors"
	"reflect"
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The coordinator refuses the whole ReportOutcomes batch when a field is over
// its limit, so long texts are cut here rather than lose other outcomes.
const (
	maxFailureTypeBytes    = 1024
	maxFailureMessageBytes = 64 << 10
	maxStackTraceBytes     = 256 << 10
)

// failureOf turns a handler's error into the failure the worker reports. It is
// where typed errors steer the outcome: Permanent skips retries, the task's
// When condition decides the rest, and RetryAfter sets the next delay.
func failureOf(err error, when func(error) bool) *reprisev1.Failure {
	retryable, message := true, err.Error()
	var permanent *PermanentError
	if errors.As(err, &permanent) {
		retryable = false
	} else {
		retryable, message = decideRetryable(when, err)
	}
	f := &reprisev1.Failure{
		Type:         truncate(failureType(err), maxFailureTypeBytes),
		Message:      truncate(message, maxFailureMessageBytes),
		NonRetryable: !retryable,
	}
	var retryAfter *RetryAfterError
	if errors.As(err, &retryAfter) && retryAfter.After > 0 {
		f.RetryAfter = durationpb.New(min(retryAfter.After, maxDuration))
	}
	var panicked *PanicError
	if errors.As(err, &panicked) {
		f.StackTrace = truncate(panicked.Stack, maxStackTraceBytes)
	}
	return f
}

// failureType names the error's kind: its own FailureType if it has one, else
// the Go type of the innermost error, since wrappers such as fmt.Errorf's say
// nothing about what went wrong.
func failureType(err error) string {
	var typer FailureTyper
	if errors.As(err, &typer) {
		return typer.FailureType()
	}
	var panicked *PanicError
	if errors.As(err, &panicked) {
		return "panic"
	}
	for {
		inner := errors.Unwrap(err)
		if inner == nil {
			break
		}
		err = inner
	}
	return strings.TrimPrefix(reflect.TypeOf(err).String(), "*")
}

func truncate(s string, maxBytes int) string {
	if len(s) <= maxBytes {
		return s
	}
	return strings.ToValidUTF8(s[:maxBytes], "")
}
