package overload

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of BodyOptions.
const (
	DefaultMaxBodyBytes    = 1 << 20
	DefaultBodyTimeout     = 5 * time.Second
	DefaultBodiesPerClient = 8
)

// BodyOptions bound the reading of a request body, which the shedder does whole before
// it classifies the request or takes a slot: a client that sends its body slowly holds
// a goroutine and a little memory for at most Timeout, never a slot of its class.
type BodyOptions struct {
	// MaxBytes caps a body (default 1 MiB): a larger one is answered 413.
	MaxBytes int64
	// Timeout bounds the reading of the whole body (default 5s): a body not complete by
	// then is answered 408.
	Timeout time.Duration
	// PerClient bounds the bodies of one client (as ClientKey names it) being read at
	// once (default 8; over it 429), so one client cannot open hundreds of slow bodies,
	// e.g. HTTP/2 streams of one connection. Negative: no bound.
	PerClient int
}

func (o BodyOptions) withDefaults() BodyOptions {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBodyBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultBodyTimeout
	}
	if o.PerClient == 0 {
		o.PerClient = DefaultBodiesPerClient
	}
	return o
}

// Errors of ReadBody.
var (
	ErrBodyTooLarge = errors.New("request body too large")
	ErrBodyTimeout  = errors.New("request body not received in time")
	ErrBodyBroken   = errors.New("request body could not be read")
)

// BodyStatus is the HTTP status answering an error of ReadBody: 413, 408 or 400.
func BodyStatus(err error) int {
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBodyTimeout):
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

// ReadBody reads r's body whole, at most max bytes and within timeout, and puts it back
// in r as bytes in memory (r.Body, r.GetBody, r.ContentLength). The deadline is the
// connection's read deadline (http.ResponseController) where w reaches the server's
// writer, HTTP/1 and HTTP/2 alike; elsewhere the body is closed at the deadline, which
// ends a read blocked on an HTTP/2 stream. After an error the body is left unread: the
// caller answers, and an HTTP/1 connection is closed after that answer.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64, timeout time.Duration) error {
	if !hasBody(r) {
		return nil
	}
	deadline := time.Now().Add(timeout)
	rc := http.NewResponseController(w)
	var expired atomic.Bool
	byConn := rc.SetReadDeadline(deadline) == nil
	if !byConn {
		t := time.AfterFunc(timeout, func() { expired.Store(true); r.Body.Close() })
		defer t.Stop()
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	switch {
	case err == nil && int64(len(b)) > max:
		err = ErrBodyTooLarge
	case err == nil:
		if byConn {
			// The rest of the request (the handler) has the server's own bounds; a read
			// deadline left here would cancel the request's context when it passes.
			rc.SetReadDeadline(time.Time{})
		}
		r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded) || expired.Load() || !time.Now().Before(deadline):
		err = ErrBodyTimeout
	default:
		err = ErrBodyBroken
	}
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	return err
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// readers counts the bodies being read per client.
type readers struct {
	mu    sync.Mutex
	n     map[string]int
	total atomic.Int64
}

func (c *readers) enter(key string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit > 0 && c.n[key] >= limit {
		return false
	}
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	c.total.Add(1)
	return true
}

func (c *readers) leave(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
	c.total.Add(-1)
}

// BodiesInFlight returns the request bodies being read (metrics).
func (s *Shedder) BodiesInFlight() int { return int(s.reading.total.Load()) }

// readBody reads r's body (ReadBody) before anything else of the shedder, or answers
// the request itself: 429 when its client has BodyOptions.PerClient bodies being read,
// else 408, 413 or 400 when the body does not come whole in time; a refused body costs
// its client a token of its rate as a request would.
func (s *Shedder) readBody(w http.ResponseWriter, r *http.Request) bool {
	if !hasBody(r) || isUpgrade(r) {
		return true
	}
	key := s.opt.ClientKey(r)
	if !s.reading.enter(key, s.opt.Body.PerClient) {
		s.reject(w, r, Other, http.StatusTooManyRequests, s.opt.RetryAfter)
		return false
	}
	err := ReadBody(w, r, s.opt.Body.MaxBytes, s.opt.Body.Timeout)
	s.reading.leave(key)
	if err == nil {
		return true
	}
	s.AllowKey(key)
	status := BodyStatus(err)
	if s.opt.OnReject != nil {
		s.opt.OnReject(Other, status)
	}
	s.opt.Reject(w, r, status)
	return false
}
