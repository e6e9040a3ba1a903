package webhook

import "time"

// Retry is the delivery schedule of the contract: a failed delivery is tried again from
// Base, doubling with jitter (each wait capped at Cap), for MaxAge; the store keeps the
// schedule and decides when a delivery is dead, nobody else.
type Retry struct {
	Base   time.Duration // first wait (WEBHOOK_BACKOFF_BASE)
	MaxAge time.Duration // retried this long after the event, then dead (WEBHOOK_MAX_AGE)
	// MaxAttempts, when positive, also ends a delivery after that many attempts.
	MaxAttempts int
	// Cap bounds one wait (default 6h).
	Cap time.Duration
}

// Next decides, after attempt n (1 for the first) of a delivery made for an event at
// created failed at now: the delivery is dead, or its next attempt is due at next.
// jitter in [0, 1] draws the wait between half and all of its step. No attempt is
// scheduled past created+MaxAge: the last one is due exactly then, and a failure at or
// after it is final, so a delivery is dead exactly MaxAge after its event.
func (r Retry) Next(n int, created, now time.Time, jitter float64) (next time.Time, dead bool) {
	deadline := created.Add(r.MaxAge)
	if !now.Before(deadline) || r.MaxAttempts > 0 && n >= r.MaxAttempts {
		return time.Time{}, true
	}
	base, limit := r.Base, r.Cap
	if base <= 0 {
		base = 10 * time.Second
	}
	if limit <= 0 {
		limit = 6 * time.Hour
	}
	step := base
	for i := 1; i < n && step < limit; i++ {
		step *= 2
	}
	step = min(step, limit)
	jitter = min(max(jitter, 0), 1)
	wait := step/2 + time.Duration(jitter*float64(step/2))
	next = now.Add(wait)
	if next.After(deadline) {
		next = deadline
	}
	return next, false
}
