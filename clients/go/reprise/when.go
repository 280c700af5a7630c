package reprise

import (
	"errors"
	"fmt"
)

// WhenIs is a When condition that retries only errors for which errors.Is
// matches one of targets (Coflux's when=(ConnectionError, TimeoutError)).
func WhenIs(targets ...error) func(error) bool {
	return func(err error) bool {
		for _, target := range targets {
			if errors.Is(err, target) {
				return true
			}
		}
		return false
	}
}

// WhenAs is a When condition that retries only errors with an E somewhere in
// their chain (found with errors.As) for which match returns true. A nil match
// accepts every E (Coflux's when=ErrorClass).
//
//	reprise.WhenAs(func(e *HTTPError) bool { return e.Status >= 500 })
func WhenAs[E error](match func(E) bool) func(error) bool {
	return func(err error) bool {
		var target E
		if !errors.As(err, &target) {
			return false
		}
		return match == nil || match(target)
	}
}

// decideRetryable evaluates the task's When condition for err. It returns
// whether the failure may be retried, and a message to report instead of
// err's own when the condition panicked.
func decideRetryable(when func(error) bool, err error) (retryable bool, message string) {
	message = err.Error()
	if when == nil {
		return true, message
	}
	defer func() {
		if p := recover(); p != nil {
			retryable = false
			message = fmt.Sprintf("retry condition (When) panicked: %v; while deciding on error: %s", p, err.Error())
		}
	}()
	return when(err), message
}
