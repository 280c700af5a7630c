package reprise

import (
	"errors"
	"fmt"
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
// the Go type of the first error in its chain (in errors.As order) that is
// more than a wrapper or a bare message, as %T prints it without the leading
// "*". Wrappers such as fmt.Errorf's %w, errors.Join, RetryAfter and
// Permanent say nothing about what went wrong, and neither does the
// *errors.errorString of errors.New: a chain with nothing else is "error".
func failureType(err error) string {
	var typer FailureTyper
	if errors.As(err, &typer) {
		return typer.FailureType()
	}
	var panicked *PanicError
	if errors.As(err, &panicked) {
		return "panic"
	}
	if named := namedErrorType(err); named != "" {
		return named
	}
	return "error"
}

// Types that carry no kind of their own, found from the values the standard
// library returns rather than by name, so a rename there cannot slip by.
var (
	bareMessageType   = reflect.TypeOf(errors.New(""))
	plainWrapperTypes = map[reflect.Type]bool{
		reflect.TypeOf(fmt.Errorf("%w", errors.New(""))):                   true,
		reflect.TypeOf(fmt.Errorf("%w%w", errors.New(""), errors.New(""))): true,
		reflect.TypeOf(errors.Join(errors.New(""))):                        true,
		reflect.TypeOf((*RetryAfterError)(nil)):                            true,
		reflect.TypeOf((*PermanentError)(nil)):                             true,
	}
)

// namedErrorType is the type name of the first error in err's chain that is
// neither a plain wrapper nor a bare message, or "" if there is none.
func namedErrorType(err error) string {
	if err == nil {
		return ""
	}
	t := reflect.TypeOf(err)
	if t != bareMessageType && !plainWrapperTypes[t] {
		return strings.TrimPrefix(t.String(), "*")
	}
	switch wrapper := err.(type) {
	case interface{ Unwrap() error }:
		return namedErrorType(wrapper.Unwrap())
	case interface{ Unwrap() []error }:
		for _, inner := range wrapper.Unwrap() {
			if named := namedErrorType(inner); named != "" {
				return named
			}
		}
	}
	return ""
}

func truncate(s string, maxBytes int) string {
	if len(s) <= maxBytes {
		return s
	}
	return strings.ToValidUTF8(s[:maxBytes], "")
}
