package store

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// groupOptions tune a group (group commit).
type groupOptions struct {
	name    string         // of the batch's span
	maxSize int            // requests in one batch
	maxWait time.Duration  // how long a batch waits for company while another is in flight
	workers int            // batches run at once
	queue   int            // requests waiting; past it submit refuses
	onBatch func(size int) // told each batch's size, when set (metrics)
}

// group coalesces concurrent requests into batches that run together: one transaction,
// one lock hold and one WAL flush for many callers (group commit). A batch takes
// whatever is queued (up to maxSize), plus what arrives within maxWait while another
// batch is in flight, and runs when one of the worker slots is free; an idle group runs
// a lone request at once. While the slots are busy the queue fills, so batches grow
// with the load. Two requests that share a key never share a batch: the second waits
// for the next one. run answers every request of its batch; reject answers a request left
// in the queue at close.
type group[T any] struct {
	opt    groupOptions
	keys   func(T) []string
	run    func([]T)
	reject func(T)
	queue  chan T
	slots  chan struct{}
	quit   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	mu     sync.RWMutex // held by submit while sending, so close never leaves a request unanswered
	closed bool
}

func newGroup[T any](opt groupOptions, keys func(T) []string, run func([]T), reject func(T)) *group[T] {
	if opt.maxSize <= 0 {
		opt.maxSize = 64
	}
	if opt.maxWait <= 0 {
		opt.maxWait = time.Millisecond
	}
	if opt.workers <= 0 {
		opt.workers = 4
	}
	if opt.queue <= 0 {
		opt.queue = 4096
	}
	g := &group[T]{opt: opt, keys: keys, run: run, reject: reject, queue: make(chan T, opt.queue),
		slots: make(chan struct{}, opt.workers), quit: make(chan struct{})}
	g.wg.Add(1)
	go g.dispatch()
	return g
}

// submit queues r; false when the queue is full or the group closed (r is not run).
func (g *group[T]) submit(r T) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false
	}
	select {
	case g.queue <- r:
		return true
	default:
		return false
	}
}

// close stops taking requests, waits for the batches in flight and rejects the rest.
func (g *group[T]) close() {
	g.once.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		close(g.quit)
	})
	g.wg.Wait()
}

func (g *group[T]) dispatch() {
	defer g.wg.Done()
	var carry []T
	for {
		var batch, next []T
		keys := map[string]bool{}
		take := func(r T) {
			ks := g.keys(r)
			for _, k := range ks {
				if keys[k] {
					next = append(next, r)
					return
				}
			}
			for _, k := range ks {
				keys[k] = true
			}
			batch = append(batch, r)
		}
		for _, r := range carry {
			if len(batch) < g.opt.maxSize {
				take(r)
			} else {
				next = append(next, r)
			}
		}
		if len(batch) == 0 {
			select {
			case r := <-g.queue:
				take(r)
			case <-g.quit:
				g.drain(carry)
				return
			}
		}
	fill:
		for len(batch) < g.opt.maxSize {
			select {
			case r := <-g.queue:
				take(r)
			default:
				break fill
			}
		}
		if len(batch) < g.opt.maxSize && len(g.slots) > 0 {
			wait := time.NewTimer(g.opt.maxWait)
		gather:
			for len(batch) < g.opt.maxSize {
				select {
				case r := <-g.queue:
					take(r)
				case <-wait.C:
					break gather
				}
			}
			wait.Stop()
		}
		carry = next
		g.slots <- struct{}{}
		g.wg.Add(1)
		go func(batch []T) {
			defer func() { <-g.slots; g.wg.Done() }()
			g.run(batch)
		}(batch)
	}
}

// drain rejects what is left at close.
func (g *group[T]) drain(carry []T) {
	for _, r := range carry {
		g.reject(r)
	}
	for {
		select {
		case r := <-g.queue:
			g.reject(r)
		default:
			return
		}
	}
}

// batchContext is the context a batch of callers' work runs in (ctx bounds it): a span
// named name that continues the first caller's trace and links every caller's, so each
// caller's trace leads to the transaction that served it.
func batchContext(ctx context.Context, name string, callers []context.Context) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(callers))
	for _, c := range callers {
		if sc := trace.SpanContextFromContext(c); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if len(callers) > 0 {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(callers[0]))
	}
	return otel.Tracer("github.com/checkout-backend/checkout/internal/store").Start(ctx, name,
		trace.WithLinks(links...), trace.WithAttributes(attribute.Int("batch.size", len(callers))))
}
