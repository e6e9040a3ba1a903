// Package webhook is the domain of partner webhooks: endpoints, the signed delivery body
// of the contract, the outbound-address policy that keeps deliveries from reaching
// internal services (server-side request forgery), checked at registration and again at
// every connection, and the sealing of signing secrets at rest.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"syscall"
	"time"

	"code.dny.dev/ssrf"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
)

// Webhook is a partner endpoint.
type Webhook struct {
	ID             string
	URL            string
	Events         []string
	Enabled        bool
	DisabledReason *string
	CreatedAt      time.Time
}

// Wants reports whether the endpoint takes events of type typ.
func (w Webhook) Wants(typ string) bool {
	return slices.Contains(w.Events, "*") || slices.Contains(w.Events, typ)
}

// Delivery is one delivery attempt.
type Delivery struct {
	ID          string
	EventID     string
	EventType   string
	Attempt     int
	StatusCode  *int
	LatencyMs   *int
	Error       *string
	DeliveredAt time.Time
}

// MaxURLLen bounds an endpoint URL.
const MaxURLLen = 2048

// ValidateEvents checks the event types of a registration.
func ValidateEvents(events []string) error {
	if len(events) == 0 {
		return checkout.Errorf(checkout.InvalidInput, []string{"input", "events"}, "give at least one event type, or \"*\" for all")
	}
	for i, e := range events {
		if e != "*" && !slices.Contains(event.OrderTypes, e) {
			return checkout.Errorf(checkout.InvalidInput, []string{"input", "events", strconv.Itoa(i)}, "unknown event type %q; known: %v or \"*\"", e, event.OrderTypes)
		}
	}
	return nil
}

// Policy decides which addresses deliveries may reach.
type Policy struct {
	// AllowPrivate admits loopback and private networks (development and tests).
	AllowPrivate bool
	// Resolver looks names up (net.DefaultResolver when nil).
	Resolver *net.Resolver
}

var (
	// Cloud metadata endpoints outside link-local ranges: refused even with AllowPrivate.
	metadata = []netip.Addr{netip.MustParseAddr("100.100.100.200"), netip.MustParseAddr("192.0.0.192"), netip.MustParseAddr("fd00:ec2::254")}
	// private are what AllowPrivate admits: loopback, private-use, shared (CGNAT) and
	// unique-local ranges.
	private = []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fc00::/7"),
	}
	// strict refuses every special-purpose range of the IANA registries (and any IPv6
	// address outside global unicast: NAT64, IPv4-compatible, link-local...), any port.
	strict = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())
	// permissive is strict with the private ranges allowed.
	permissive = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork(),
		ssrf.WithAllowedV4Prefixes(v4(private)...), ssrf.WithAllowedV6Prefixes(v6(private)...))
)

func v4(ps []netip.Prefix) (out []netip.Prefix) {
	for _, p := range ps {
		if p.Addr().Is4() {
			out = append(out, p)
		}
	}
	return out
}

func v6(ps []netip.Prefix) (out []netip.Prefix) {
	for _, p := range ps {
		if p.Addr().Is6() {
			out = append(out, p)
		}
	}
	return out
}

// ErrForbiddenAddress is returned for an address deliveries may not reach.
var ErrForbiddenAddress = errors.New("address not allowed for webhooks")

// CheckAddr refuses every special-purpose address of the IANA IPv4 and IPv6 registries
// (code.dny.dev/ssrf: link-local, metadata, unspecified, multicast, benchmarking,
// reserved, documentation, NAT64, 6to4, IPv4-compatible...) always, and loopback and
// private ones unless AllowPrivate. An IPv4-mapped IPv6 address is judged as its IPv4.
func (p Policy) CheckAddr(a netip.Addr) error {
	a = a.Unmap()
	if slices.Contains(metadata, a) {
		return fmt.Errorf("%w: %s is a metadata address", ErrForbiddenAddress, a)
	}
	g := strict
	if p.AllowPrivate {
		g = permissive
	}
	if err := g.SafeAddr(a); err != nil {
		for _, pr := range private {
			if !p.AllowPrivate && pr.Contains(a) {
				return fmt.Errorf("%w: %s is loopback or private (set WEBHOOK_ALLOW_PRIVATE=true in development)", ErrForbiddenAddress, a)
			}
		}
		return fmt.Errorf("%w: %s is a special-purpose address", ErrForbiddenAddress, a)
	}
	return nil
}

// ValidateURL checks an endpoint URL: http(s), a host, and every address it resolves to
// allowed. The answer is a userError INVALID_WEBHOOK_URL.
func (p Policy) ValidateURL(ctx context.Context, raw string) error {
	bad := func(format string, args ...any) error {
		return checkout.Errorf(checkout.InvalidWebhookURL, []string{"input", "url"}, format, args...)
	}
	if len(raw) > MaxURLLen {
		return bad("url is longer than %d characters", MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return bad("url must be an absolute http or https URL")
	}
	if u.User != nil {
		return bad("url must not carry credentials")
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if err := p.CheckAddr(a); err != nil {
			return bad("%v", err)
		}
		return nil
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(lctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return bad("host %q does not resolve", host)
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// Dialer returns a dialer that checks the address it actually connects to, so a name
// that resolves somewhere else at delivery time (DNS rebinding) is still refused.
func (p Policy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		return p.CheckAddr(ap.Addr())
	}}
}

// NewSecret makes an endpoint's signing secret.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + hex.EncodeToString(b)
}

// Sign is the Checkout-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<t>.<body>" with the secret>, as Stripe signs its webhooks.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Body is the delivery body of the contract for an order event.
func Body(env event.Envelope) ([]byte, error) {
	var p event.OrderPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return nil, err
	}
	type order struct {
		ID         string    `json:"id"`
		Status     string    `json:"status"`
		Sequence   int       `json:"sequence"`
		TotalCents int64     `json:"totalCents"`
		Currency   string    `json:"currency"`
		UpdatedAt  time.Time `json:"updatedAt"`
	}
	d := p.Order
	return json.Marshal(map[string]any{
		"id":        env.ID,
		"type":      env.Type,
		"createdAt": env.OccurredAt.UTC().Format(time.RFC3339Nano),
		"data": map[string]any{"order": order{ID: d.ID, Status: d.Status, Sequence: d.Sequence,
			TotalCents: d.TotalCents, Currency: d.Currency, UpdatedAt: d.UpdatedAt.UTC()}},
	})
}

// Page is a page of delivery attempts, newest first.
type Page struct {
	Deliveries []Delivery
	HasNext    bool
}

// Cursor is a position in a delivery list.
type Cursor struct {
	DeliveredAt time.Time
	ID          string
}

// Store is the persistence port of webhooks.
type Store interface {
	Register(ctx context.Context, id, url string, events []string, secret string) (Webhook, error)
	List(ctx context.Context) ([]Webhook, error)
	Get(ctx context.Context, id string) (*Webhook, error)
	Delete(ctx context.Context, id string) (Webhook, error)
	Enable(ctx context.Context, id string) (Webhook, error)
	Deliveries(ctx context.Context, webhookID string, first int, after *Cursor) (Page, error)
}

// Service runs the admin operations on partner webhooks.
type Service struct {
	store  Store
	policy Policy
	newID  func() string
	sealer *Sealer
}

// WithSealer has the service seal each new signing secret with x before the store sees
// it (WEBHOOK_SECRET_KEY); the delivery side opens it with the same Sealer.
func (s *Service) WithSealer(x *Sealer) *Service {
	s.sealer = x
	return s
}

// NewService returns a Service.
func NewService(s Store, p Policy, newID func() string) *Service {
	return &Service{store: s, policy: p, newID: newID}
}

// Register validates and stores an endpoint; the secret is returned once. Every
// operation of the service is the admin's.
func (s *Service) Register(ctx context.Context, a checkout.Actor, rawURL string, events []string) (Webhook, string, error) {
	if err := checkout.RequireAdmin(a); err != nil {
		return Webhook{}, "", err
	}
	if err := ValidateEvents(events); err != nil {
		return Webhook{}, "", err
	}
	if err := s.policy.ValidateURL(ctx, rawURL); err != nil {
		return Webhook{}, "", err
	}
	secret, id := NewSecret(), s.newID()
	stored, err := s.sealer.Seal(id, secret)
	if err != nil {
		return Webhook{}, "", err
	}
	w, err := s.store.Register(ctx, id, rawURL, slices.Compact(slices.Sorted(slices.Values(events))), stored)
	return w, secret, err
}

// List returns the endpoints (deleted ones excluded).
func (s *Service) List(ctx context.Context, a checkout.Actor) ([]Webhook, error) {
	if err := checkout.RequireAdmin(a); err != nil {
		return nil, err
	}
	return s.store.List(ctx)
}

// Delete removes an endpoint; nothing more is delivered to it.
func (s *Service) Delete(ctx context.Context, a checkout.Actor, id string) (Webhook, error) {
	if err := checkout.RequireAdmin(a); err != nil {
		return Webhook{}, err
	}
	id, ok := checkout.CanonicalID(id)
	if !ok {
		return Webhook{}, errNotFound()
	}
	return s.store.Delete(ctx, id)
}

// Enable re-enables an endpoint and replays what it missed, in order.
func (s *Service) Enable(ctx context.Context, a checkout.Actor, id string) (Webhook, error) {
	if err := checkout.RequireAdmin(a); err != nil {
		return Webhook{}, err
	}
	id, ok := checkout.CanonicalID(id)
	if !ok {
		return Webhook{}, errNotFound()
	}
	return s.store.Enable(ctx, id)
}

// Deliveries pages an endpoint's delivery attempts.
func (s *Service) Deliveries(ctx context.Context, a checkout.Actor, id string, first int, after *Cursor) (Page, error) {
	if err := checkout.RequireAdmin(a); err != nil {
		return Page{}, err
	}
	id, ok := checkout.CanonicalID(id)
	if !ok {
		return Page{}, nil // as for an endpoint that does not exist
	}
	return s.store.Deliveries(ctx, id, first, after)
}

// errNotFound is the answer for an endpoint that does not exist (as the store's).
func errNotFound() error {
	return checkout.Errorf(checkout.NotFound, []string{"id"}, "webhook not found")
}
