package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
)

// errGroupBusy answers a call when its group's queue is full: retry shortly.
var errGroupBusy = fmt.Errorf("%w: too many requests waiting", checkout.ErrUnavailable)

// call is one caller's request to a batched operation.
type call[In, Out any] struct {
	ctx context.Context
	in  In
	res chan outcome[Out] // buffered: a batch never blocks on a gone caller
}

type outcome[Out any] struct {
	val Out
	err error
}

// batched runs an operation for many concurrent callers at once (a group): run does a
// batch in one go and answers each input (its own error in errs) or fails as a whole.
// A batch that fails as a whole for a reason other than the database being unavailable
// is run again call by call, so one bad request never fails the others.
type batched[In, Out any] struct {
	name    string
	group   *group[*call[In, Out]]
	run     func(ctx context.Context, ins []In) (out []Out, errs []error, err error)
	onBatch func(size int)
}

// newBatched runs run for batches of concurrent calls; two calls that share one of their
// keys never share a batch.
func newBatched[In, Out any](opt groupOptions, keys func(In) []string, run func(context.Context, []In) ([]Out, []error, error)) *batched[In, Out] {
	b := &batched[In, Out]{run: run, name: opt.name, onBatch: opt.onBatch}
	b.group = newGroup(opt, func(c *call[In, Out]) []string { return keys(c.in) }, b.runBatch,
		func(c *call[In, Out]) { c.res <- outcome[Out]{err: errGroupBusy} })
	return b
}

// do runs in with whatever else is waiting and returns its own answer.
func (b *batched[In, Out]) do(ctx context.Context, in In) (Out, error) {
	c := &call[In, Out]{ctx: ctx, in: in, res: make(chan outcome[Out], 1)}
	var zero Out
	if !b.group.submit(c) {
		return zero, errGroupBusy
	}
	select {
	case r := <-c.res:
		return r.val, r.err
	case <-ctx.Done():
		// The batch may still commit it; callers are idempotent.
		return zero, fmt.Errorf("%w: %w", checkout.ErrUnavailable, ctx.Err())
	}
}

func (b *batched[In, Out]) close() { b.group.close() }

func (b *batched[In, Out]) runBatch(calls []*call[In, Out]) {
	live := calls[:0]
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			c.res <- outcome[Out]{err: fmt.Errorf("%w: %w", checkout.ErrUnavailable, err)}
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	if b.onBatch != nil {
		b.onBatch(len(live))
	}
	ins := make([]In, len(live))
	for i, c := range live {
		ins[i] = c.in
	}
	callers := make([]context.Context, len(live))
	for i, c := range live {
		callers[i] = c.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx, span := batchContext(ctx, b.name, callers)
	defer span.End()
	out, errs, err := b.run(ctx, ins)
	if err != nil && len(live) > 1 && !errors.Is(err, checkout.ErrUnavailable) {
		for _, c := range live {
			out, errs, err := b.run(c.ctx, []In{c.in})
			c.res <- firstOutcome(out, errs, err)
		}
		return
	}
	for i, c := range live {
		if err != nil {
			c.res <- outcome[Out]{err: err}
			continue
		}
		c.res <- firstOutcome(out[i:], errs[i:], nil)
	}
}

// firstOutcome is the answer to the first input of a batch.
func firstOutcome[Out any](out []Out, errs []error, err error) outcome[Out] {
	if err != nil {
		return outcome[Out]{err: err}
	}
	return outcome[Out]{val: out[0], err: errs[0]}
}
