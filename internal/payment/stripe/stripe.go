// Package stripe is the payment.Gateway for Stripe, built on stripe-go's
// PaymentIntents and Refunds APIs with its own client (never the global
// stripe.Key), no library retries (resilience.Gateway retries) and a silent
// library logger. It also verifies and decodes Stripe webhooks (ParseWebhook).
//
// A charge creates and confirms a PaymentIntent in one call, with the
// charge's idempotency key as Stripe's Idempotency-Key, so resending the
// same payment.ChargeRequest returns the first PaymentIntent instead of
// charging again.
package stripe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/internal/payment"
	stripego "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// ProviderName is what Gateway.Name returns.
const ProviderName = "stripe"

// Defaults for Config.
const (
	DefaultAPIBase = stripego.APIURL // https://api.stripe.com
	DefaultTimeout = 10 * time.Second
)

// Config configures New.
type Config struct {
	// SecretKey is the Stripe secret key (sk_test_..., sk_live_..., rk_...).
	SecretKey string
	// APIBase is the API's base URL; default DefaultAPIBase. Tests point it
	// at stripe-mock or a fake server.
	APIBase string
	// Timeout bounds each HTTP request; default DefaultTimeout.
	Timeout time.Duration
}

// Gateway is the Stripe payment.Gateway. It is safe for concurrent use.
type Gateway struct {
	api *client.API
	key string // only to redact it from messages
}

var _ payment.Gateway = (*Gateway)(nil)

// New returns a Gateway for cfg. It fails only if cfg.SecretKey is empty.
func New(cfg Config) (*Gateway, error) {
	if cfg.SecretKey == "" {
		return nil, errors.New("stripe: secret key is required")
	}
	if cfg.APIBase == "" {
		cfg.APIBase = DefaultAPIBase
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	backend := stripego.GetBackendWithConfig(stripego.APIBackend, &stripego.BackendConfig{
		URL:               stripego.String(strings.TrimRight(cfg.APIBase, "/")),
		HTTPClient:        &http.Client{Timeout: cfg.Timeout, Transport: statusRecorder{http.DefaultTransport}},
		MaxNetworkRetries: stripego.Int64(0),
		EnableTelemetry:   stripego.Bool(false),
		// Silent: stripe-go's debug and error logs can carry request and
		// response details; this package reports through its errors only.
		LeveledLogger: &stripego.LeveledLogger{Level: stripego.LevelNull},
	})
	api := client.New(cfg.SecretKey, &stripego.Backends{API: backend, Connect: backend, Uploads: backend})
	return &Gateway{api: api, key: cfg.SecretKey}, nil
}

// Name returns "stripe".
func (g *Gateway) Name() string { return ProviderName }

// Charge creates and confirms a card PaymentIntent for r. A pm_... token is
// used as the payment method; a tok_... token is wrapped as
// payment_method_data[card][token]. Declines (a card_error, or an intent
// left in requires_payment_method or canceled) return StatusDeclined and a
// nil error. An intent still processing returns its id and an error
// matching payment.ErrPending.
func (g *Gateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	if err := r.Validate(); err != nil {
		return payment.Charge{}, withProvider(err)
	}
	params := &stripego.PaymentIntentParams{
		Amount:             stripego.Int64(r.AmountCents),
		Currency:           stripego.String(strings.ToLower(r.Currency)),
		Confirm:            stripego.Bool(true),
		PaymentMethodTypes: stripego.StringSlice([]string{"card"}),
	}
	switch {
	case strings.HasPrefix(r.Token, "pm_"):
		params.PaymentMethod = stripego.String(r.Token)
	case strings.HasPrefix(r.Token, "tok_"):
		params.PaymentMethodData = &stripego.PaymentIntentPaymentMethodDataParams{Type: stripego.String("card")}
		// stripe-go has no typed field for card[token].
		params.AddExtra("payment_method_data[card][token]", r.Token)
	default:
		return payment.Charge{}, &payment.PermanentError{
			Provider: ProviderName, Op: "charge", Code: "invalid_request",
			Msg: "unsupported token kind: want a pm_ or tok_ token",
		}
	}
	if r.OrderID != "" {
		params.AddMetadata("order_id", r.OrderID)
	}
	var status int
	params.Context = withStatus(ctx, &status)
	params.SetIdempotencyKey(r.IdempotencyKey)

	pi, err := g.api.PaymentIntents.New(params)
	if err != nil {
		var se *stripego.Error
		if errors.As(err, &se) && se.Type == stripego.ErrorTypeCard {
			return cardDecline(se, r), nil
		}
		return payment.Charge{}, g.classify(ctx, "charge", r.Token, status, err)
	}
	return fromIntent(pi, r)
}

func fromIntent(pi *stripego.PaymentIntent, r payment.ChargeRequest) (payment.Charge, error) {
	c := payment.Charge{ProviderPaymentID: pi.ID, AmountCents: pi.Amount, Currency: strings.ToUpper(string(pi.Currency))}
	if c.AmountCents == 0 {
		c.AmountCents = r.AmountCents
	}
	if c.Currency == "" {
		c.Currency = strings.ToUpper(r.Currency)
	}
	switch pi.Status {
	case stripego.PaymentIntentStatusSucceeded:
		c.Status = payment.StatusSucceeded
	case stripego.PaymentIntentStatusRequiresAction:
		c.Status = payment.StatusRequiresAction
	case stripego.PaymentIntentStatusRequiresPaymentMethod, stripego.PaymentIntentStatusCanceled:
		c.Status = payment.StatusDeclined
		c.DeclineCode, c.Message = declineOf(pi.LastPaymentError, r.Token)
		if c.DeclineCode == "" {
			c.DeclineCode = "card_declined"
			if pi.Status == stripego.PaymentIntentStatusCanceled {
				c.DeclineCode = "canceled"
			}
		}
	default: // processing, requires_capture, requires_confirmation
		return c, fmt.Errorf("payment stripe charge: payment intent %s is %s: %w", pi.ID, pi.Status, payment.ErrPending)
	}
	return c, nil
}

func cardDecline(se *stripego.Error, r payment.ChargeRequest) payment.Charge {
	c := payment.Charge{Status: payment.StatusDeclined, AmountCents: r.AmountCents, Currency: strings.ToUpper(r.Currency)}
	c.DeclineCode, c.Message = declineOf(se, r.Token)
	if c.DeclineCode == "" {
		c.DeclineCode = "card_declined"
	}
	if se.PaymentIntent != nil {
		c.ProviderPaymentID = se.PaymentIntent.ID
	}
	return c
}

// declineOf returns the decline code (decline_code, else code) and the
// redacted message of a Stripe error.
func declineOf(se *stripego.Error, token string) (code, msg string) {
	if se == nil {
		return "", ""
	}
	code = string(se.DeclineCode)
	if code == "" {
		code = string(se.Code)
	}
	return code, redact(se.Msg, token)
}

// Refund refunds r.ProviderPaymentID (a pi_... PaymentIntent or a ch_...
// charge), all of what remains when r.AmountCents is 0. A Reason that Stripe
// knows (duplicate, fraudulent, requested_by_customer) is sent as the
// refund's reason; any other goes into its metadata.
func (g *Gateway) Refund(ctx context.Context, r payment.RefundRequest) (payment.Refund, error) {
	if err := r.Validate(); err != nil {
		return payment.Refund{}, withProvider(err)
	}
	params := &stripego.RefundParams{}
	if strings.HasPrefix(r.ProviderPaymentID, "ch_") {
		params.Charge = stripego.String(r.ProviderPaymentID)
	} else {
		params.PaymentIntent = stripego.String(r.ProviderPaymentID)
	}
	if r.AmountCents > 0 {
		params.Amount = stripego.Int64(r.AmountCents)
	}
	switch stripego.RefundReason(r.Reason) {
	case stripego.RefundReasonDuplicate, stripego.RefundReasonFraudulent, stripego.RefundReasonRequestedByCustomer:
		params.Reason = stripego.String(r.Reason)
	case "":
	default:
		params.AddMetadata("reason", r.Reason)
	}
	if r.OrderID != "" {
		params.AddMetadata("order_id", r.OrderID)
	}
	var status int
	params.Context = withStatus(ctx, &status)
	params.SetIdempotencyKey(r.IdempotencyKey)

	re, err := g.api.Refunds.New(params)
	if err != nil {
		return payment.Refund{}, g.classify(ctx, "refund", "", status, err)
	}
	return payment.Refund{ProviderRefundID: re.ID, Status: string(re.Status)}, nil
}

// classify turns a failed call into a *payment.TransientError (HTTP 409,
// 429, 5xx, network errors, timeouts, unreadable responses: the outcome is
// unknown and resending with the same idempotency key is safe), a
// *payment.PermanentError (other 4xx), or the caller's context error.
// Stripe's Stripe-Should-Retry header, when present, decides. status is the
// HTTP status received, 0 if none.
func (g *Gateway) classify(ctx context.Context, op, token string, status int, err error) error {
	var se *stripego.Error
	if errors.As(err, &se) {
		status = se.HTTPStatusCode
		code := string(se.Code)
		if code == "" {
			code = string(se.Type)
		}
		msg := redact(se.Msg, token, g.key)
		if se.RequestID != "" {
			msg += " (request " + se.RequestID + ")"
		}
		retry := retryable(status) || (status == 0 && se.Type == stripego.ErrorTypeAPI)
		if se.LastResponse != nil {
			switch se.LastResponse.Header.Get("Stripe-Should-Retry") {
			case "true":
				retry = true
			case "false":
				retry = false
			}
		}
		if retry {
			return &payment.TransientError{Provider: ProviderName, Op: op, HTTPStatus: status, Code: code, Msg: msg}
		}
		return &payment.PermanentError{Provider: ProviderName, Op: op, HTTPStatus: status, Code: code, Msg: msg}
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return &payment.TransientError{Provider: ProviderName, Op: op, Code: "timeout", Msg: "context deadline exceeded", Err: cerr}
		}
		return fmt.Errorf("payment stripe %s: %w", op, context.Cause(ctx))
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		// *url.Error: method, URL and cause; the token travels in the body,
		// never in the URL.
		te := &payment.TransientError{Provider: ProviderName, Op: op, Msg: redact(err.Error(), token, g.key), Err: netErr}
		if netErr.Timeout() {
			te.Code = "timeout"
		}
		return te
	}
	// A response that could not be read or decoded. Unless the status says
	// the request was refused, it may have been carried out: only a resend
	// with the same key can tell.
	if status >= 400 && !retryable(status) {
		return &payment.PermanentError{Provider: ProviderName, Op: op, HTTPStatus: status, Msg: "unreadable error response from provider"}
	}
	return &payment.TransientError{Provider: ProviderName, Op: op, HTTPStatus: status, Msg: "unreadable response from provider"}
}

// retryable reports whether an HTTP status means "try again": 409 (a
// concurrent request with the same idempotency key), 429 and 5xx.
func retryable(status int) bool {
	return status == http.StatusConflict || status == http.StatusTooManyRequests || status >= 500
}

type statusKey struct{}

// withStatus returns ctx carrying p, into which statusRecorder stores the
// HTTP status of the request made with it: stripe-go drops the status of a
// response whose body is not a Stripe error object.
func withStatus(ctx context.Context, p *int) context.Context {
	return context.WithValue(ctx, statusKey{}, p)
}

type statusRecorder struct{ next http.RoundTripper }

func (s statusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if p, ok := req.Context().Value(statusKey{}).(*int); ok && resp != nil {
		*p = resp.StatusCode
	}
	return resp, err
}

func withProvider(err error) error {
	var pe *payment.PermanentError
	if errors.As(err, &pe) {
		pe.Provider = ProviderName
	}
	return err
}

// redact removes secrets (the token, the API key) from a provider message:
// Stripe quotes unknown ids back ("No such PaymentMethod: 'pm_...'"), and
// stripe-mock quotes a malformed Authorization header.
func redact(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}
