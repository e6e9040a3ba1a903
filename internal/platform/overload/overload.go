// Package overload sheds load at the HTTP edge. A request's body is first read whole,
// bounded in size and time and with no slot taken (BodyOptions), so a client sending
// it slowly holds nothing another client needs. Requests are then sorted into classes
// (checkout, read, other, stream), each with its own bound on requests served at once (a
// bulkhead), so a checkout rush cannot starve reads and the other way round. Past its
// bound a request waits a short time for a slot, then is answered 503 with Retry-After.
// A client over its own rate (a token bucket per JWT subject, else per client address:
// see Clients) is answered 429 with Retry-After. Options.Reject writes the body of both
// answers (the API's are GraphQL errors). WebSocket upgrades take a token of their client's rate but no bulkhead slot (a
// socket is long-lived; its subscriptions take tokens through AllowKey).
package overload

import (
	"math"
	"net/http"
	"strconv"
	"strings"
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
	DefaultMaxClients = 10000
)

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
	// MaxClients bounds the clients whose buckets are kept (least recently seen are
	// dropped first; default 10000).
	MaxClients int
	// Body bounds the reading of request bodies, done whole before Classify runs and
	// before a slot is taken (zero: the defaults of BodyOptions).
	Body BodyOptions
	// Classify sorts a request into its class (the API's: gqlhttp.Classify; default:
	// every request is Other). It runs after the body was read: r.Body is in memory
	// (r.GetBody gives it again).
	Classify func(*http.Request) Class
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
	clients   *lru.Cache[string, *rate.Limiter]
	reading   readers
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
	if opt.Burst <= 0 {
		opt.Burst = max(1, int(math.Ceil(float64(opt.Rate))))
	}
	opt.Body = opt.Body.withDefaults()
	if opt.Classify == nil {
		opt.Classify = func(*http.Request) Class { return Other }
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
	if opt.Rate > 0 {
		s.clients, _ = lru.New[string, *rate.Limiter](opt.MaxClients)
	}
	return s
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
		class := s.opt.Classify(r)
		if wait, ok := s.AllowKey(s.opt.ClientKey(r)); !ok {
			s.reject(w, r, class, http.StatusTooManyRequests, wait)
			return
		}
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
func (s *Shedder) AllowKey(key string) (time.Duration, bool) {
	if s.clients == nil {
		return 0, true
	}
	lim, ok := s.clients.Get(key)
	if !ok {
		lim = rate.NewLimiter(s.opt.Rate, s.opt.Burst)
		if prev, found, _ := s.clients.PeekOrAdd(key, lim); found {
			lim = prev
		}
	}
	now := time.Now()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
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
