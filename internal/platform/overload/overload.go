// Package overload sheds load at the HTTP edge. A request's body is first read whole,
// bounded in size and time and with no slot taken (BodyOptions), so a client sending
// it slowly holds nothing another client needs. Requests are then sorted into classes
// (checkout, read, other, stream), each with its own bound on requests served at once (a
// bulkhead), so a checkout rush cannot starve reads and the other way round. Past its
// bound a request waits a short time for a slot, then is answered 503 with Retry-After.
// A client over its own rate (a token bucket per JWT subject, else per client address or
// IPv6 prefix: see Clients) is answered 429 with Retry-After. A request costs one token
// per operation it runs (the root fields of its operation, as Options.Classify counts
// them), so ten aliased fields cost ten; checkouts also take tokens of a second, slower
// bucket of the same client (Options.CheckoutRate). Options.Reject writes the body of
// both answers (the API's are GraphQL errors). WebSocket upgrades take a token of their
// client's rate but no bulkhead slot (a socket is long-lived; its subscriptions take
// tokens through AllowKey).
//
// Authenticated and anonymous clients have separate tables of buckets, so no number of
// anonymous addresses can push a signed-in client's bucket out (which would give it back
// full). When the anonymous table is full, the least recently seen bucket is dropped only
// if it is full anyway (dropping it loses nothing); otherwise the table is churning
// faster than buckets refill, which only a flood of addresses does, and new anonymous
// clients share one bucket until it calms down.
package overload

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Class names a bulkhead.
type Class string

// Request classes.
const (
	Checkout Class = "checkout" // the checkout mutation
	Read     Class = "read"     // queries
	Other    Class = "other"    // other mutations, and what cannot be told
	Stream   Class = "stream"   // subscriptions (WebSocket upgrades, and POSTs refused by the transport)
)

// Defaults of Options.
const (
	DefaultMaxWait    = 100 * time.Millisecond
	DefaultRetryAfter = time.Second
	DefaultMaxClients = 100000
	// DefaultMaxAnonymousClients bounds the anonymous buckets kept: at the default rate
	// a bucket refills in 2 s, so only more new addresses than this every 2 s make
	// newcomers share the overflow bucket.
	DefaultMaxAnonymousClients = 50000
)

// AnonymousKeyPrefix starts the key of a client known by its address (Clients.Key):
// such buckets live in the anonymous table.
const AnonymousKeyPrefix = "ip:"

// Cost is what a request takes from its client's buckets.
type Cost struct {
	// Operations is the root fields of the operation the request runs: one token each
	// of the client's rate (below 1 counts as 1).
	Operations int
	// Checkouts is the checkout root fields among them: one token each of the client's
	// checkout rate.
	Checkouts int
}

// Options configure a Shedder. Zero values take the defaults.
type Options struct {
	// Limits bound the requests of each class served at once; a class not listed is
	// not bounded.
	Limits map[Class]int
	// MaxWait is how long a request waits for a slot of its class (default 100ms).
	// At most as many requests as the class's limit wait; the rest are refused at once.
	MaxWait time.Duration
	// RetryAfter is what a 503 tells clients to wait (default 1s; whole seconds).
	RetryAfter time.Duration
	// Rate and Burst are each client's token bucket: requests per second, and how
	// many may come at once (default: Rate rounded up, at least 1). Zero Rate: no
	// per-client limit.
	Rate  rate.Limit
	Burst int
	// CheckoutRate and CheckoutBurst are each client's second bucket, taken by checkouts
	// only (Cost.Checkouts): checkouts per second, and how many may come at once
	// (default: CheckoutRate rounded up, at least 1). Zero CheckoutRate: no checkout
	// rate.
	CheckoutRate  rate.Limit
	CheckoutBurst int
	// MaxClients bounds the authenticated clients whose buckets are kept (least
	// recently seen are dropped first; default DefaultMaxClients).
	MaxClients int
	// MaxAnonymousClients bounds the anonymous clients (keys starting with
	// AnonymousKeyPrefix) whose buckets are kept, in a table of their own (default
	// DefaultMaxAnonymousClients).
	MaxAnonymousClients int
	// Body bounds the reading of request bodies, done whole before Classify runs and
	// before a slot is taken (zero: the defaults of BodyOptions).
	Body BodyOptions
	// Classify sorts a request into its class and says what it costs (the API's:
	// gqlhttp.Classify; default: every request is Other and costs one token). It runs
	// after the body was read: r.Body is in memory (r.GetBody gives it again). A
	// request never takes more than a full bucket: a client's Burst should be at least
	// the root fields an operation may have.
	Classify func(*http.Request) (Class, Cost)
	// ClientKey names the client a request counts against (default ClientKey: the JWT
	// subject, else the peer address; Clients.Key believes trusted proxies).
	ClientKey func(*http.Request) string
	// OnReject, when set, is told each refusal (metrics): status is 503 or 429, or 408,
	// 413 or 400 for a body that did not come whole in time (class Other).
	OnReject func(class Class, status int)
	// Reject writes a refusal's answer: status is 503 (its class is full) or 429 (its
	// client is over its rate, or has BodyOptions.PerClient bodies being read), both
	// with Retry-After set; or, for a body, 408 (not complete within
	// BodyOptions.Timeout), 413 (over BodyOptions.MaxBytes) or 400 (broken off). The
	// default is a plain-text status line.
	Reject func(w http.ResponseWriter, r *http.Request, status int)
}

// Shedder is the middleware's state; safe for concurrent use.
type Shedder struct {
	opt       Options
	bulkheads map[Class]*bulkhead
	clients   *lru.Cache[string, *buckets] // authenticated; nil: no rate at all
	anonymous *lru.Cache[string, *buckets]
	admit     sync.Mutex // new anonymous clients, one at a time
	overflow  *buckets   // new anonymous clients while the anonymous table churns
	reading   readers    // the bodies being read, per client
}

// buckets are one client's: its rate and its checkout rate (nil: not limited).
type buckets struct{ requests, checkouts *rate.Limiter }

// full says whether taking b away loses nothing: it would be made anew just as it is.
func (b *buckets) full(now time.Time) bool {
	for _, l := range []*rate.Limiter{b.requests, b.checkouts} {
		if l != nil && l.TokensAt(now) < float64(l.Burst()) {
			return false
		}
	}
	return true
}

type bulkhead struct {
	slots    chan struct{}
	waiting  atomic.Int64
	inFlight atomic.Int64
}

// New returns a Shedder.
func New(opt Options) *Shedder {
	if opt.MaxWait == 0 {
		opt.MaxWait = DefaultMaxWait
	}
	if opt.RetryAfter <= 0 {
		opt.RetryAfter = DefaultRetryAfter
	}
	if opt.MaxClients <= 0 {
		opt.MaxClients = DefaultMaxClients
	}
	if opt.MaxAnonymousClients <= 0 {
		opt.MaxAnonymousClients = DefaultMaxAnonymousClients
	}
	if opt.Burst <= 0 {
		opt.Burst = max(1, int(math.Ceil(float64(opt.Rate))))
	}
	if opt.CheckoutBurst <= 0 {
		opt.CheckoutBurst = max(1, int(math.Ceil(float64(opt.CheckoutRate))))
	}
	opt.Body = opt.Body.withDefaults()
	if opt.Classify == nil {
		opt.Classify = func(*http.Request) (Class, Cost) { return Other, Cost{} }
	}
	if opt.ClientKey == nil {
		opt.ClientKey = ClientKey
	}
	if opt.Reject == nil {
		opt.Reject = func(w http.ResponseWriter, _ *http.Request, status int) {
			http.Error(w, http.StatusText(status), status)
		}
	}
	s := &Shedder{opt: opt, bulkheads: map[Class]*bulkhead{}}
	for c, n := range opt.Limits {
		if n > 0 {
			s.bulkheads[c] = &bulkhead{slots: make(chan struct{}, n)}
		}
	}
	if opt.Rate > 0 || opt.CheckoutRate > 0 {
		s.clients, _ = lru.New[string, *buckets](opt.MaxClients)
		s.anonymous, _ = lru.New[string, *buckets](opt.MaxAnonymousClients)
		s.overflow = s.newBuckets()
	}
	return s
}

func (s *Shedder) newBuckets() *buckets {
	b := &buckets{}
	if s.opt.Rate > 0 {
		b.requests = rate.NewLimiter(s.opt.Rate, s.opt.Burst)
	}
	if s.opt.CheckoutRate > 0 {
		b.checkouts = rate.NewLimiter(s.opt.CheckoutRate, s.opt.CheckoutBurst)
	}
	return b
}

// bucketsOf returns the buckets of the client named key, made on first sight.
func (s *Shedder) bucketsOf(key string, now time.Time) *buckets {
	table := s.clients
	anonymous := strings.HasPrefix(key, AnonymousKeyPrefix)
	if anonymous {
		table = s.anonymous
	}
	if b, ok := table.Get(key); ok {
		return b
	}
	if !anonymous {
		b := s.newBuckets()
		if prev, found, _ := table.PeekOrAdd(key, b); found {
			return prev
		}
		return b
	}
	s.admit.Lock()
	defer s.admit.Unlock()
	if b, ok := table.Peek(key); ok {
		return b
	}
	if table.Len() >= s.opt.MaxAnonymousClients {
		if _, oldest, ok := table.GetOldest(); ok && !oldest.full(now) {
			return s.overflow
		}
		table.RemoveOldest()
	}
	b := s.newBuckets()
	table.Add(key, b)
	return b
}

// InFlight returns the requests of class being served (metrics).
func (s *Shedder) InFlight(class Class) int {
	if b := s.bulkheads[class]; b != nil {
		return int(b.inFlight.Load())
	}
	return 0
}

// Middleware sheds what next cannot serve in time. The body is read first, then the
// request classified from it, then its client's rate checked, and only then is a slot
// of its class taken.
func (s *Shedder) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.readBody(w, r) {
			return
		}
		class, cost := s.opt.Classify(r)
		key := s.opt.ClientKey(r)
		if wait, ok := s.Allow(key, cost); !ok {
			s.reject(w, r, class, http.StatusTooManyRequests, wait)
			return
		}
		r = s.paid(r, key, cost)
		b := s.bulkheads[class]
		if b == nil || isUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		if !b.acquire(r, s.opt.MaxWait) {
			s.reject(w, r, class, http.StatusServiceUnavailable, s.opt.RetryAfter)
			return
		}
		defer b.release()
		next.ServeHTTP(w, r)
	})
}

func isUpgrade(r *http.Request) bool { return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") }

// AllowKey takes a token from the bucket of the client named key (as ClientKey names
// it), or says how long until one is there.
func (s *Shedder) AllowKey(key string) (time.Duration, bool) { return s.Allow(key, Cost{}) }

// Allow takes what c costs from the buckets of the client named key, all of it or
// nothing: max(1, c.Operations) tokens of its rate and c.Checkouts of its checkout rate,
// each at most a full bucket. Refused, it says how long until there are enough.
func (s *Shedder) Allow(key string, c Cost) (time.Duration, bool) {
	return s.take(key, max(1, c.Operations), c.Checkouts)
}

// chargeKey holds, in the context of a request the Middleware let through, its client
// and what it paid.
type chargeKey struct{}

type charge struct {
	s    *Shedder
	key  string
	paid Cost
}

// paid notes in r's context that its client key paid cost at the door (Charge and
// ClientOf read it). Not on a WebSocket upgrade: a socket's operations run concurrently,
// each taking its own token.
func (s *Shedder) paid(r *http.Request, key string, cost Cost) *http.Request {
	if isUpgrade(r) {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), chargeKey{}, &charge{s: s, key: key, paid: cost}))
}

// ClientOf names the client of a request the Middleware let through (as
// Options.ClientKey named it), or "" outside one (and on a WebSocket).
func ClientOf(ctx context.Context) string {
	if c, _ := ctx.Value(chargeKey{}).(*charge); c != nil {
		return c.key
	}
	return ""
}

// Charge takes from the request's client what c costs beyond what the Middleware took
// at the door, once the operation is known: the door reads only what it can see (a
// persisted query sent by hash alone costs one there). Refused, it says how long until
// there are enough, and nothing is taken. Outside a Shedder's Middleware it allows.
// One request's operations are charged one after the other.
func Charge(ctx context.Context, c Cost) (time.Duration, bool) {
	ch, _ := ctx.Value(chargeKey{}).(*charge)
	if ch == nil {
		return 0, true
	}
	ops := max(1, c.Operations) - max(1, ch.paid.Operations)
	checkouts := c.Checkouts - ch.paid.Checkouts
	if ops <= 0 && checkouts <= 0 {
		return 0, true
	}
	wait, ok := ch.s.take(ch.key, max(0, ops), max(0, checkouts))
	if ok {
		ch.paid = Cost{Operations: max(c.Operations, ch.paid.Operations), Checkouts: max(c.Checkouts, ch.paid.Checkouts)}
	}
	return wait, ok
}

func (s *Shedder) take(key string, ops, checkouts int) (time.Duration, bool) {
	if s.clients == nil {
		return 0, true
	}
	now := time.Now()
	b := s.bucketsOf(key, now)
	var (
		wait  time.Duration
		taken []*rate.Reservation
	)
	take := func(l *rate.Limiter, n int) {
		if l == nil || n <= 0 {
			return
		}
		res := l.ReserveN(now, min(n, l.Burst()))
		taken = append(taken, res)
		wait = max(wait, res.DelayFrom(now))
	}
	take(b.requests, ops)
	take(b.checkouts, checkouts)
	if wait > 0 {
		for _, res := range taken {
			res.CancelAt(now)
		}
		return wait, false
	}
	return 0, true
}

func (b *bulkhead) acquire(r *http.Request, wait time.Duration) bool {
	select {
	case b.slots <- struct{}{}:
		b.inFlight.Add(1)
		return true
	default:
	}
	// The queue is as long as the bulkhead is wide: beyond that, waiting is hopeless.
	if wait <= 0 || b.waiting.Add(1) > int64(cap(b.slots)) {
		b.waiting.Add(-1)
		return false
	}
	defer b.waiting.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case b.slots <- struct{}{}:
		b.inFlight.Add(1)
		return true
	case <-t.C:
	case <-r.Context().Done():
	}
	return false
}

func (b *bulkhead) release() {
	b.inFlight.Add(-1)
	<-b.slots
}

// reject answers status with Retry-After (whole seconds, at least 1) and the body
// Options.Reject writes.
func (s *Shedder) reject(w http.ResponseWriter, r *http.Request, class Class, status int, retry time.Duration) {
	if s.opt.OnReject != nil {
		s.opt.OnReject(class, status)
	}
	secs := max(1, int(math.Ceil(retry.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	s.opt.Reject(w, r, status)
}

// ClientKey names the caller by its verified JWT subject when auth ran before, else by
// its peer address (no proxy is trusted: see Clients).
func ClientKey(r *http.Request) string { return (&Clients{}).Key(r) }
