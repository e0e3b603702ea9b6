package grpc

import (
	"errors"
	"fmt"
)

// ErrInvalidOptions is wrapped by the errors that [NewRetrier] and
// [NewChaos] return for options they cannot use. The message names the
// offending field.
var ErrInvalidOptions = errors.New("ringfence/grpc: invalid options")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
}
