package fallback

import (
	"context"
	"errors"
	"net/http"

	"github.com/ringfence/ringfence/retry"
)

// httpStatusCoder is the method by which an error exposes the HTTP status
// of the response it reports, as the AWS SDK's response errors (from
// smithy-go) do.
type httpStatusCoder interface{ HTTPStatusCode() int }

// timeouter is the method by which net.Error, *url.Error and
// context.DeadlineExceeded say they are a timeout.
type timeouter interface{ Timeout() bool }

// Unavailable reports whether err means that the dependency is
// unavailable, so that a chain may serve something else. It is the
// default ChainSettings.ShouldFallback.
//
// It returns false for an error that carries an HTTP status of 4xx other
// than 408 Request Timeout and 429 Too Many Requests: the dependency
// answered, and a 404 Not Found or 403 Forbidden is its answer, not an
// outage to hide behind stale data. It returns true for every other
// error, including other statuses, timeouts and a breaker's rejection.
//
// An error carries a status if it, or an error it wraps (found through
// Unwrap, as errors.As finds it), is a *retry.StatusError or has a method
//
//	HTTPStatusCode() int
//
// as the AWS SDK's response errors have. Errors that keep the status in a
// field, such as Azure's *azcore.ResponseError (StatusCode) and Google's
// *googleapi.Error (Code), are classified by a ShouldFallback of the
// caller's, which can use [UnavailableStatus]; see the example of
// ChainSettings.
//
// Unavailable does not allocate unless an error in the chain has an As
// method.
func Unavailable(err error) bool {
	code, ok := statusOf(err)
	return !ok || UnavailableStatus(code)
}

// UnavailableStatus reports whether an HTTP status code in an error means
// that the dependency is unavailable: false for 4xx other than 408 and
// 429, true otherwise. It is the rule [Unavailable] applies.
func UnavailableStatus(code int) bool {
	if code >= 400 && code < 500 {
		return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
	}
	return true
}

// statusOf returns the HTTP status carried by err or an error it wraps,
// looking depth first as errors.As does. It walks the chain itself rather
// than calling errors.As, whose targets would escape to the heap, unless
// an error has an As method of its own.
func statusOf(err error) (int, bool) {
	for err != nil {
		switch e := err.(type) {
		case *retry.StatusError:
			return e.StatusCode, true
		case httpStatusCoder:
			return e.HTTPStatusCode(), true
		case interface{ As(any) bool }:
			return statusAs(err)
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				if code, ok := statusOf(inner); ok {
					return code, true
				}
			}
			return 0, false
		default:
			return 0, false
		}
	}
	return 0, false
}

// statusAs is statusOf through errors.As, for errors with an As method.
func statusAs(err error) (int, bool) {
	var se *retry.StatusError
	if errors.As(err, &se) {
		return se.StatusCode, true
	}
	var sc httpStatusCoder
	if errors.As(err, &sc) {
		return sc.HTTPStatusCode(), true
	}
	return 0, false
}

// unknownOutcome reports whether a failed write's error leaves its outcome
// unknown: the request may have reached the dependency and been applied.
// That is so for a timeout (an error in err's chain whose Timeout method
// reports true, such as context.DeadlineExceeded or a net.Error), for a
// cancellation in flight (context.Canceled), and for 504 Gateway Timeout.
// A refused connection, a breaker's rejection or any other status is
// taken as not applied.
func unknownOutcome(err error) bool {
	for err != nil {
		if err == context.Canceled {
			return true
		}
		if t, ok := err.(timeouter); ok && t.Timeout() {
			return true
		}
		switch e := err.(type) {
		case *retry.StatusError:
			return e.StatusCode == http.StatusGatewayTimeout
		case httpStatusCoder:
			return e.HTTPStatusCode() == http.StatusGatewayTimeout
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				if unknownOutcome(inner) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
