package grpc

import (
	"context"
	"errors"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Outcome is how a breaker counts a finished call.
type Outcome uint8

// The outcomes a [BreakerOptions.Classify] function returns.
const (
	// Success counts the call as the dependency working.
	Success Outcome = iota
	// Failure counts the call as the dependency failing.
	Failure
	// Excluded does not count the call at all.
	Excluded
)

// String returns the outcome's name in lower case, such as "excluded".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Excluded:
		return "excluded"
	default:
		return "outcome(" + strconv.Itoa(int(o)) + ")"
	}
}

// DefaultClassify is the default [BreakerOptions.Classify]. It counts as
// failures the codes that say the dependency is down, overloaded, too slow
// or broken: UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, INTERNAL,
// UNKNOWN and DATA_LOSS. It does not count CANCELED, which almost always
// comes from the caller's side (a canceled context, a closing connection).
// Every other code, OK included, is the dependency working and counts as a
// success: INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
// UNAUTHENTICATED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE and
// UNIMPLEMENTED are definite answers that an open breaker would not mend.
func DefaultClassify(c codes.Code) Outcome {
	switch c {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded,
		codes.Internal, codes.Unknown, codes.DataLoss:
		return Failure
	case codes.Canceled:
		return Excluded
	default:
		return Success
	}
}

// maxCode is the largest status code gRPC defines.
const maxCode = codes.Unauthenticated

// codeSet is a set of status codes, one bit per code.
type codeSet uint32

func (s codeSet) has(c codes.Code) bool { return c <= maxCode && s&(1<<c) != 0 }

// newCodeSet returns the set of cs; field names the option in the error
// for an invalid code.
func newCodeSet(field string, cs []codes.Code) (codeSet, error) {
	var s codeSet
	for i, c := range cs {
		if c == codes.OK || c > maxCode {
			return 0, invalid("%s[%d] must be a failure code (1 to %d), got %d", field, i, maxCode, uint32(c))
		}
		s |= 1 << c
	}
	return s, nil
}

// statusError is an error made by this package that carries a gRPC status
// code for status.Code and status.FromError, while errors.Is and errors.As
// see the error it wraps (a breaker's *OpenError, a retry's *Error, an
// injected fault).
type statusError struct {
	code codes.Code
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }

func (e *statusError) Unwrap() error { return e.err }

// GRPCStatus returns the status with the error's code and message.
func (e *statusError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }

// contextStatus turns a context's error into the status error gRPC itself
// returns for it (CANCELED or DEADLINE_EXCEEDED); other errors pass as is.
func contextStatus(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return err
}
