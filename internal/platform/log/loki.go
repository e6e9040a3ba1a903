package log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LokiOptions configure log shipping to Loki.
type LokiOptions struct {
	// URL is Loki's base URL (http://loki:3100); lines go to URL/loki/api/v1/push.
	URL string
	// Tenant, when set, is sent as X-Scope-OrgID (multi-tenant Loki).
	Tenant string
	// Service is the service label (default "checkout").
	Service string
	// Level is the lowest level shipped (default: info).
	Level slog.Level
	// Buffer is the most lines held waiting for Loki (default 10000); past it, lines
	// are dropped and counted, never waited for.
	Buffer int
	// BatchLines and FlushInterval bound a push: at most that many lines, sent at least
	// that often (defaults 1000 and 1s).
	BatchLines    int
	FlushInterval time.Duration
	// Timeout bounds one push (default 5s); a failed push is tried Attempts times
	// (default 3) before its lines are dropped and counted.
	Timeout  time.Duration
	Attempts int
	// Client is the HTTP client (default: one with Timeout).
	Client *http.Client
}

// MaxLokiLine is the longest line shipped; longer ones are dropped (and counted).
const MaxLokiLine = 64 << 10

// maxOperationLabels bounds the distinct operation label values: operation names come
// from clients, so past this many (or when not identifier-shaped) they ship as "other".
const maxOperationLabels = 50

var operationShape = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Loki ships JSON log lines to Loki in batches from one goroutine. Logging never waits
// for it: a line that does not fit the buffer is dropped and counted (Dropped). Labels
// are few and bounded: service, level and operation; everything else, the correlation
// id included, stays in the JSON line (query with `| json | correlationId="..."`).
type Loki struct {
	opt     LokiOptions
	lines   chan lokiLine
	dropped atomic.Uint64
	shipped atomic.Uint64
	closing chan struct{}
	done    chan struct{}
	once    sync.Once

	opsMu sync.Mutex
	ops   map[string]bool
}

type lokiLine struct {
	at   time.Time
	line []byte
}

// NewLoki returns a shipper; Run sends what it is given until Close.
func NewLoki(opt LokiOptions) (*Loki, error) {
	if !strings.HasPrefix(opt.URL, "http://") && !strings.HasPrefix(opt.URL, "https://") {
		return nil, fmt.Errorf("log: LOKI_URL must be an http(s) URL")
	}
	opt.URL = strings.TrimRight(opt.URL, "/")
	if opt.Service == "" {
		opt.Service = "checkout"
	}
	if opt.Buffer <= 0 {
		opt.Buffer = 10000
	}
	if opt.BatchLines <= 0 {
		opt.BatchLines = 1000
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	if opt.Attempts <= 0 {
		opt.Attempts = 3
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: opt.Timeout}
	}
	return &Loki{opt: opt, lines: make(chan lokiLine, opt.Buffer), closing: make(chan struct{}), done: make(chan struct{}), ops: map[string]bool{}}, nil
}

// Dropped is the number of lines not shipped (buffer full, too long, or Loki refusing
// or unreachable through every attempt).
func (l *Loki) Dropped() uint64 { return l.dropped.Load() }

// Shipped is the number of lines Loki accepted.
func (l *Loki) Shipped() uint64 { return l.shipped.Load() }

// Write takes one JSON line (slog's JSON handler writes one record per call). It never
// blocks.
func (l *Loki) Write(p []byte) (int, error) {
	if len(p) > MaxLokiLine {
		l.dropped.Add(1)
		return len(p), nil
	}
	line := lokiLine{at: time.Now(), line: bytes.TrimRight(append([]byte(nil), p...), "\n")}
	select {
	case <-l.closing:
		l.dropped.Add(1)
	default:
		select {
		case l.lines <- line:
		default:
			l.dropped.Add(1)
		}
	}
	return len(p), nil
}

// Handler is the slog handler writing the service's JSON lines (with the correlation
// id, and the same redaction as stdout) to the shipper. Wrap it as the stdout handler
// is wrapped (telemetry.LogHandler adds trace ids) and join both with Tee.
func (l *Loki) Handler() slog.Handler {
	h := slog.NewJSONHandler(l, &slog.HandlerOptions{Level: l.opt.Level, ReplaceAttr: redact})
	return &ctxHandler{Handler: h}
}

// Run ships lines until Close; it returns once the lines in hand at Close are sent (or
// the Close context ends).
func (l *Loki) Run(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(l.opt.FlushInterval)
	defer tick.Stop()
	var batch []lokiLine
	send := func(ctx context.Context) {
		if len(batch) > 0 {
			l.push(ctx, batch)
			batch = nil
		}
	}
	for {
		select {
		case ln := <-l.lines:
			batch = append(batch, ln)
			if len(batch) >= l.opt.BatchLines {
				send(ctx)
			}
		case <-tick.C:
			send(ctx)
		case <-l.closing:
			for drained := false; !drained; {
				select {
				case ln := <-l.lines:
					batch = append(batch, ln)
					if len(batch) >= l.opt.BatchLines {
						send(ctx)
					}
				default:
					drained = true
				}
			}
			send(ctx)
			return
		case <-ctx.Done():
			return
		}
	}
}

// Close stops taking lines and waits (at most until ctx ends) for those in hand to ship.
func (l *Loki) Close(ctx context.Context) error {
	l.once.Do(func() { close(l.closing) })
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type lokiStream struct {
	Stream map[string]string `json:"stream"`
	Values [][2]string       `json:"values"`
}

// labels reads a line's level and operation (lines are the service's own JSON).
func (l *Loki) labels(line []byte) map[string]string {
	var f struct {
		Level     string `json:"level"`
		Operation string `json:"operation"`
	}
	json.Unmarshal(line, &f)
	lb := map[string]string{"service": l.opt.Service, "level": strings.ToLower(f.Level)}
	if lb["level"] == "" {
		lb["level"] = "unknown"
	}
	if op := l.operation(f.Operation); op != "" {
		lb["operation"] = op
	}
	return lb
}

func (l *Loki) operation(name string) string {
	if name == "" {
		return ""
	}
	if !operationShape.MatchString(name) {
		return "other"
	}
	l.opsMu.Lock()
	defer l.opsMu.Unlock()
	if l.ops[name] {
		return name
	}
	if len(l.ops) >= maxOperationLabels {
		return "other"
	}
	l.ops[name] = true
	return name
}

// Body is the push request body (Loki's JSON push format) of lines: one stream per
// label set, values in time order.
func (l *Loki) body(lines []lokiLine) ([]byte, error) {
	lines = append([]lokiLine(nil), lines...)
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	streams := map[string]*lokiStream{}
	var keys []string
	for _, ln := range lines {
		lb := l.labels(ln.line)
		k := lb["level"] + "\x00" + lb["operation"]
		s := streams[k]
		if s == nil {
			s = &lokiStream{Stream: lb}
			streams[k] = s
			keys = append(keys, k)
		}
		s.Values = append(s.Values, [2]string{strconv.FormatInt(ln.at.UnixNano(), 10), string(ln.line)})
	}
	sort.Strings(keys)
	out := struct {
		Streams []*lokiStream `json:"streams"`
	}{}
	for _, k := range keys {
		out.Streams = append(out.Streams, streams[k])
	}
	return json.Marshal(out)
}

// errPermanent marks a push Loki refused for good (a 4xx other than 429).
var errPermanent = errors.New("refused")

func (l *Loki) push(ctx context.Context, lines []lokiLine) {
	body, err := l.body(lines)
	if err != nil {
		l.dropped.Add(uint64(len(lines)))
		return
	}
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = l.post(ctx, body)
		if err == nil {
			l.shipped.Add(uint64(len(lines)))
			return
		}
		if errors.Is(err, errPermanent) || attempt >= l.opt.Attempts {
			l.dropped.Add(uint64(len(lines)))
			return
		}
		select {
		case <-time.After(wait):
			wait *= 2
		case <-ctx.Done():
			l.dropped.Add(uint64(len(lines)))
			return
		}
	}
}

func (l *Loki) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.opt.URL+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if l.opt.Tenant != "" {
		req.Header.Set("X-Scope-OrgID", l.opt.Tenant)
	}
	resp, err := l.opt.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("loki push: %s", resp.Status)
	default:
		return fmt.Errorf("%w: loki push: %s", errPermanent, resp.Status)
	}
}

// Tee sends every record to each handler (stdout and Loki, say).
func Tee(hs ...slog.Handler) slog.Handler { return tee(hs) }

type tee []slog.Handler

func (t tee) Enabled(ctx context.Context, level slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, level) {
			return true
		}
	}
	return false
}

func (t tee) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range t {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (t tee) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(tee, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (t tee) WithGroup(name string) slog.Handler {
	out := make(tee, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}
