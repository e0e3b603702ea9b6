package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// forcer is implemented by errors that can report a rejection an operator
// ordered, such as a circuit breaker forced open: retrying it cannot help
// until the operator changes their mind.
type forcer interface {
	Forced() bool
}

// retryAfterer is implemented by errors that carry a delay requested by the
// server or by a circuit breaker, such as *StatusError.
type retryAfterer interface {
	RetryAfter() time.Duration
}

// facts is what the built-in rules learn from a failed attempt's error.
type facts struct {
	permanent bool          // made by Permanent or backoff.Permanent
	forced    bool          // the first forcer in the chain says so
	final     bool          // a certificate error or a host that does not exist
	delay     time.Duration // from the first retryAfterer in the chain
	// seen records which of forcer and retryAfterer the walk has met.
	seenForcer, seenDelay bool
}

// inspect walks err's chain once. It allocates nothing unless an error in
// the chain has its own As method, which only errors.As honours.
func inspect(err error) facts {
	var f facts
	if !f.walk(err) {
		f = inspectWithAs(err)
	}
	return f
}

// walk records what err and the errors it wraps say, depth first as
// errors.As looks. It reports false, leaving f half filled, if it meets an
// error with an As method.
func (f *facts) walk(err error) bool {
	for err != nil {
		if _, ok := err.(interface{ As(any) bool }); ok {
			return false
		}
		switch e := err.(type) {
		case *permanentError, *backoff.PermanentError:
			f.permanent = true
		case x509.UnknownAuthorityError, x509.HostnameError, x509.CertificateInvalidError,
			*tls.CertificateVerificationError:
			f.final = true
		case *net.DNSError:
			if e.IsNotFound {
				f.final = true
			}
		}
		if !f.seenForcer {
			if x, ok := err.(forcer); ok {
				f.seenForcer, f.forced = true, x.Forced()
			}
		}
		if !f.seenDelay {
			if x, ok := err.(retryAfterer); ok {
				f.seenDelay, f.delay = true, x.RetryAfter()
			}
		}
		switch x := err.(type) {
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if !f.walk(e) {
					return false
				}
			}
			return true
		default:
			return true
		}
	}
	return true
}

// inspectWithAs is inspect through errors.As, for chains with As methods.
func inspectWithAs(err error) facts {
	var f facts
	var p *permanentError
	var bp *backoff.PermanentError
	f.permanent = errors.As(err, &p) || errors.As(err, &bp)
	var fo forcer
	if errors.As(err, &fo) {
		f.seenForcer, f.forced = true, fo.Forced()
	}
	var ra retryAfterer
	if errors.As(err, &ra) {
		f.seenDelay, f.delay = true, ra.RetryAfter()
	}
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cv  *tls.CertificateVerificationError
		dns *net.DNSError
	)
	f.final = errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) ||
		errors.As(err, &cv) || (errors.As(err, &dns) && dns.IsNotFound)
	return f
}

// retryable applies the built-in rules and then p.IsRetryable (or, without
// it, the default that certificate errors and unknown hosts are final).
func (f *facts) retryable(p *Policy, err error) bool {
	if f.permanent || f.forced || errors.Is(err, context.Canceled) {
		return false
	}
	if p.IsRetryable != nil {
		return p.IsRetryable(err)
	}
	return !f.final
}

// retryable reports whether err may be retried under p.
func retryable(p *Policy, err error) bool {
	f := inspect(err)
	return f.retryable(p, err)
}

// IsPermanent reports whether err, or an error it wraps, was made by
// Permanent (or by backoff.Permanent from github.com/cenkalti/backoff/v4):
// a failure that trying again cannot mend. Other packages that retry on
// their own schedule, such as fallback's outbox replay, use it to honour
// the same marker.
func IsPermanent(err error) bool { return inspect(err).permanent }
