package payment

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker"
)

// Defaults for ResilientOptions.
const (
	DefaultFailureThreshold = 5
	DefaultOpenTimeout      = 30 * time.Second
	DefaultInitialInterval  = 200 * time.Millisecond
	DefaultMaxInterval      = 5 * time.Second
	DefaultMaxElapsedTime   = 15 * time.Second
	DefaultMaxTries         = 5
)

// ResilientOptions configures NewResilient. Zero values take the defaults.
type ResilientOptions struct {
	// BreakerName names the circuit breaker; default "payment-" + g.Name().
	BreakerName string
	// FailureThreshold is the number of consecutive transient failures that
	// opens the breaker; default 5.
	FailureThreshold uint32
	// OpenTimeout is how long the breaker stays open before letting one
	// probe call through (half-open); default 30s.
	OpenTimeout time.Duration
	// InitialInterval is the first backoff ceiling; default 200ms.
	InitialInterval time.Duration
	// MaxInterval caps the backoff ceiling; default 5s.
	MaxInterval time.Duration
	// MaxElapsedTime bounds the total time spent retrying one call; default
	// 15s; negative means no bound other than ctx and MaxTries.
	MaxElapsedTime time.Duration
	// MaxTries bounds the attempts of one call, the first included; default
	// 5; negative means no bound other than ctx and MaxElapsedTime.
	MaxTries int
	// OnStateChange, if set, is called on each breaker transition (e.g. to
	// export a metric). It runs under the breaker's lock: it must not call
	// back into the Resilient.
	OnStateChange func(name string, from, to gobreaker.State)
	// OnRetry, if set, is called before each retry with the error that
	// caused it and the wait before the next attempt.
	OnRetry func(op string, err error, wait time.Duration)
}

// Resilient is a Gateway that sends every call through a circuit breaker and
// retries transient failures with capped exponential backoff and full
// jitter. Each retry resends the identical request, with the same
// idempotency key, so a retried charge is never a second charge. Declines,
// *PermanentError, ErrPending and context cancellation are never retried and
// never count against the breaker.
type Resilient struct {
	g    Gateway
	cb   *gobreaker.CircuitBreaker
	opts ResilientOptions
}

var _ Gateway = (*Resilient)(nil)

// NewResilient wraps g.
func NewResilient(g Gateway, opts ResilientOptions) *Resilient {
	if opts.BreakerName == "" {
		opts.BreakerName = "payment-" + g.Name()
	}
	if opts.FailureThreshold == 0 {
		opts.FailureThreshold = DefaultFailureThreshold
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.InitialInterval <= 0 {
		opts.InitialInterval = DefaultInitialInterval
	}
	if opts.MaxInterval <= 0 {
		opts.MaxInterval = DefaultMaxInterval
	}
	if opts.MaxElapsedTime == 0 {
		opts.MaxElapsedTime = DefaultMaxElapsedTime
	}
	if opts.MaxTries == 0 {
		opts.MaxTries = DefaultMaxTries
	}
	threshold := opts.FailureThreshold
	cb := gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        opts.BreakerName,
		MaxRequests: 1,
		Timeout:     opts.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= threshold
		},
		// Only provider trouble counts: declines (nil error), permanent
		// errors, pending outcomes and caller cancellation do not.
		IsSuccessful:  func(err error) bool { return !IsTransient(err) },
		OnStateChange: opts.OnStateChange,
	})
	return &Resilient{g: g, cb: cb, opts: opts}
}

// Name returns the wrapped Gateway's provider name.
func (r *Resilient) Name() string { return r.g.Name() }

// BreakerName returns the circuit breaker's name, e.g. "payment-stripe".
func (r *Resilient) BreakerName() string { return r.cb.Name() }

// State returns the circuit breaker's current state.
func (r *Resilient) State() gobreaker.State { return r.cb.State() }

// Charge charges req, retrying transient failures with the same request.
func (r *Resilient) Charge(ctx context.Context, req ChargeRequest) (Charge, error) {
	return call(ctx, r, "charge", func() (Charge, error) { return r.g.Charge(ctx, req) })
}

// Refund refunds req, retrying transient failures with the same request.
func (r *Resilient) Refund(ctx context.Context, req RefundRequest) (Refund, error) {
	return call(ctx, r, "refund", func() (Refund, error) { return r.g.Refund(ctx, req) })
}

func call[T any](ctx context.Context, r *Resilient, op string, fn func() (T, error)) (T, error) {
	var last error
	attempt := func() (T, error) {
		out, err := r.cb.Execute(func() (any, error) { return fn() })
		res, _ := out.(T)
		if err == nil {
			return res, nil
		}
		last = err
		if !IsTransient(err) {
			return res, backoff.Permanent(err)
		}
		return res, err
	}
	opts := []backoff.RetryOption{
		backoff.WithBackOff(&fullJitter{exp: backoff.ExponentialBackOff{
			InitialInterval: r.opts.InitialInterval,
			Multiplier:      2,
			MaxInterval:     r.opts.MaxInterval,
			// The envelope is deterministic; fullJitter draws below it.
			RandomizationFactor: 0,
		}}),
		backoff.WithMaxElapsedTime(max(r.opts.MaxElapsedTime, 0)),
	}
	if r.opts.MaxTries > 0 {
		opts = append(opts, backoff.WithMaxTries(uint(r.opts.MaxTries)))
	}
	if r.opts.OnRetry != nil {
		opts = append(opts, backoff.WithNotify(func(err error, d time.Duration) { r.opts.OnRetry(op, err, d) }))
	}
	res, err := backoff.Retry(ctx, attempt, opts...)
	if perm, ok := err.(*backoff.PermanentError); ok {
		// Retry returns it wrapped when the last allowed try failed for good.
		err = perm.Err
	}
	if err != nil && last != nil && ctx.Err() != nil && !errors.Is(err, last) {
		// Retry gave up on ctx; keep the provider's last answer too.
		err = fmt.Errorf("%w (last attempt: %w)", err, last)
	}
	return res, err
}

// fullJitter draws each wait uniformly from [0, d], d being the next
// ceiling of the wrapped exponential backoff ("full jitter").
type fullJitter struct{ exp backoff.ExponentialBackOff }

func (j *fullJitter) Reset() { j.exp.Reset() }

func (j *fullJitter) NextBackOff() time.Duration {
	d := j.exp.NextBackOff()
	if d <= 0 {
		return d
	}
	return rand.N(d + 1)
}
