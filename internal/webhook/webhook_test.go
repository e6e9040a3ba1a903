package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/webhook"
)

// The special-purpose ranges of the IANA registries are refused whatever the policy;
// loopback and private networks only without WEBHOOK_ALLOW_PRIVATE.
func TestPolicy_SpecialPurposeAddressesRefused(t *testing.T) {
	t.Parallel()
	strict, dev := webhook.Policy{}, webhook.Policy{AllowPrivate: true}
	always := []string{
		"64:ff9b::7f00:1",  // NAT64 of 127.0.0.1
		"64:ff9b::808:808", // NAT64 of a public address: still a translator's
		"2002:7f00:1::",    // 6to4 of 127.0.0.1
		"::127.0.0.1",      // IPv4-compatible
		"::8.8.8.8",        // IPv4-compatible, public
		"198.18.0.1",       // benchmarking
		"198.19.255.254",   // benchmarking
		"240.0.0.1",        // reserved
		"255.255.255.255",  // broadcast
		"0.0.0.1",          // "this network"
		"0.0.0.0", "::",    // unspecified
		"169.254.169.254",      // link-local, cloud metadata
		"fe80::1",              // link-local
		"100.100.100.200",      // metadata (Alibaba)
		"fd00:ec2::254",        // metadata (AWS IPv6)
		"192.0.0.192",          // metadata (Oracle), IETF assignments
		"224.0.0.1", "ff02::1", // multicast
		"192.0.2.1", "2001:db8::1", // documentation
	}
	for _, s := range always {
		a := netip.MustParseAddr(s)
		for _, p := range []webhook.Policy{strict, dev} {
			if err := p.CheckAddr(a); !errors.Is(err, webhook.ErrForbiddenAddress) {
				t.Errorf("allowPrivate=%v %s: %v, want refused", p.AllowPrivate, s, err)
			}
		}
	}
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "172.16.5.4", "192.168.0.10", "100.64.0.1", "::1", "fd12:3456::1", "::ffff:10.0.0.1"} {
		a := netip.MustParseAddr(s)
		if err := strict.CheckAddr(a); !errors.Is(err, webhook.ErrForbiddenAddress) || !strings.Contains(err.Error(), "WEBHOOK_ALLOW_PRIVATE") {
			t.Errorf("%s: %v, want refused with the hint", s, err)
		}
		if err := dev.CheckAddr(a); err != nil {
			t.Errorf("with WEBHOOK_ALLOW_PRIVATE %s: %v", s, err)
		}
	}
	for _, s := range []string{"93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.4.4"} {
		if err := strict.CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("public %s refused: %v", s, err)
		}
	}
	// Registration refuses them with the contract's userError.
	for _, u := range []string{"http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/", "http://[::127.0.0.1]/", "http://198.18.0.1/", "http://240.0.0.1/", "http://0.0.0.1/"} {
		if err := dev.ValidateURL(context.Background(), u); checkout.ErrorCode(err) != checkout.InvalidWebhookURL {
			t.Errorf("%s: %v, want INVALID_WEBHOOK_URL", u, err)
		}
	}
}

func newKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func TestSealer_SealsAndOpens(t *testing.T) {
	t.Parallel()
	s, err := webhook.NewSealer("k1:" + newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	secret := webhook.NewSecret()
	stored, err := s.Seal("wh-1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, secret) || strings.Contains(stored, strings.TrimPrefix(secret, "whsec_")) || !strings.HasPrefix(stored, "sealed:v1:k1:") {
		t.Fatalf("stored %q", stored)
	}
	if again, _ := s.Seal("wh-1", secret); again == stored {
		t.Error("two seals of one secret are equal: the nonce is not random")
	}
	if got, err := s.Open("wh-1", stored); err != nil || got != secret {
		t.Fatalf("open: %q %v", got, err)
	}
	// Bound to its webhook: copied to another row, it does not open.
	if _, err := s.Open("wh-2", stored); !errors.Is(err, webhook.ErrUnsealable) {
		t.Fatalf("opened for another webhook: %v", err)
	}
	// Altered, it does not open.
	tampered := stored[:len(stored)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(stored, "AA")]
	if _, err := s.Open("wh-1", tampered); !errors.Is(err, webhook.ErrUnsealable) {
		t.Fatalf("opened an altered value: %v", err)
	}
	// A secret stored before sealing was turned on still opens, as it is.
	if got, err := s.Open("wh-1", "whsec_legacy"); err != nil || got != "whsec_legacy" {
		t.Fatalf("legacy: %q %v", got, err)
	}
	// The signature the delivery side makes is the contract's, over the real secret.
	now := time.Unix(1700000000, 0)
	sig, err := s.Sign("wh-1", stored, now, []byte(`{"id":"e1"}`))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(now.Unix(), 10) + `.{"id":"e1"}`))
	if want := "t=1700000000,v1=" + hex.EncodeToString(m.Sum(nil)); sig != want {
		t.Fatalf("signature %s, want %s", sig, want)
	}
	// Without a key (a nil Sealer), secrets are stored as they are, and a sealed one
	// cannot be opened.
	var none *webhook.Sealer
	if got, _ := none.Seal("wh-1", secret); got != secret {
		t.Fatalf("nil sealer: %q", got)
	}
	if _, err := none.Open("wh-1", stored); !errors.Is(err, webhook.ErrUnsealable) {
		t.Fatalf("nil sealer opened: %v", err)
	}
}

func TestSealer_Rotation(t *testing.T) {
	t.Parallel()
	oldKey, newKeyB64 := newKey(t), newKey(t)
	before, _ := webhook.NewSealer("k1:" + oldKey)
	stored, _ := before.Seal("wh-1", "whsec_a")
	after, err := webhook.NewSealer("k2:" + newKeyB64 + ", k1:" + oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := after.Open("wh-1", stored); err != nil || got != "whsec_a" {
		t.Fatalf("the old key no longer opens: %q %v", got, err)
	}
	if fresh, _ := after.Seal("wh-2", "whsec_b"); !strings.HasPrefix(fresh, "sealed:v1:k2:") {
		t.Fatalf("new secrets are not sealed with the first key: %s", fresh)
	}
	resealed, changed, err := after.Reseal("wh-1", stored)
	if err != nil || !changed || !strings.HasPrefix(resealed, "sealed:v1:k2:") {
		t.Fatalf("reseal: %q %v %v", resealed, changed, err)
	}
	if _, changed, _ := after.Reseal("wh-1", resealed); changed {
		t.Fatal("resealing a current value changed it")
	}
	// Once the old key is dropped, only resealed values open.
	only, _ := webhook.NewSealer("k2:" + newKeyB64)
	if got, err := only.Open("wh-1", resealed); err != nil || got != "whsec_a" {
		t.Fatalf("resealed: %q %v", got, err)
	}
	if _, err := only.Open("wh-1", stored); !errors.Is(err, webhook.ErrUnsealable) || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("a value of a dropped key: %v", err)
	}
}

func TestNewSealer_BadKeys(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	if s, err := webhook.NewSealer(" "); s != nil || err != nil {
		t.Fatalf("empty: %v %v", s, err)
	}
	for name, spec := range map[string]string{
		"no id":       k,
		"short key":   "k1:" + base64.StdEncoding.EncodeToString([]byte("short")),
		"not base64":  "k1:***",
		"bad id":      "k 1:" + k,
		"duplicate":   "k1:" + k + ",k1:" + k,
		"empty entry": "k1:" + k + ",",
	} {
		if _, err := webhook.NewSealer(spec); err == nil {
			t.Errorf("%s accepted", name)
		} else if strings.Contains(err.Error(), k) {
			t.Errorf("%s: the error quotes the key: %v", name, err)
		}
	}
}

// memStore keeps what the service registers.
type memStore struct {
	webhook.Store
	secrets map[string]string
}

func (m *memStore) Register(_ context.Context, id, url string, events []string, secret string) (webhook.Webhook, error) {
	m.secrets[id] = secret
	return webhook.Webhook{ID: id, URL: url, Events: events, Enabled: true}, nil
}

// The service seals a new secret before the store sees it, and answers the secret itself
// once, to the admin who registered.
var admin = checkout.Actor{CustomerID: "ops", Admin: true}

func TestService_RegisterStoresTheSecretSealed(t *testing.T) {
	t.Parallel()
	sealer, _ := webhook.NewSealer("k1:" + newKey(t))
	store := &memStore{secrets: map[string]string{}}
	svc := webhook.NewService(store, webhook.Policy{}, func() string { return "wh-1" }).WithSealer(sealer)
	w, secret, err := svc.Register(context.Background(), admin, "https://93.184.215.14/hooks", []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	stored := store.secrets[w.ID]
	if !strings.HasPrefix(secret, "whsec_") || stored == secret || strings.Contains(stored, strings.TrimPrefix(secret, "whsec_")) {
		t.Fatalf("stored %q for secret %q", stored, secret)
	}
	if got, err := sealer.Open(w.ID, stored); err != nil || got != secret {
		t.Fatalf("open: %q %v", got, err)
	}
}

// Managing webhooks is the admin's: a customer gets FORBIDDEN and an anonymous
// caller UNAUTHENTICATED from every operation, before the store is touched (the
// service here has no store; reaching it would panic).
func TestService_EveryOperationIsTheAdmins(t *testing.T) {
	t.Parallel()
	s := webhook.NewService(nil, webhook.Policy{}, func() string { return "id" })
	ctx := context.Background()
	for _, c := range []struct {
		actor checkout.Actor
		want  error
	}{
		{checkout.Actor{CustomerID: "alice"}, checkout.ErrForbidden},
		{checkout.Actor{}, checkout.ErrUnauthenticated},
	} {
		ops := map[string]func() error{
			"register": func() error {
				_, _, err := s.Register(ctx, c.actor, "https://93.184.215.14/h", []string{"*"})
				return err
			},
			"list":       func() error { _, err := s.List(ctx, c.actor); return err },
			"delete":     func() error { _, err := s.Delete(ctx, c.actor, "w1"); return err },
			"enable":     func() error { _, err := s.Enable(ctx, c.actor, "w1"); return err },
			"deliveries": func() error { _, err := s.Deliveries(ctx, c.actor, "w1", 10, nil); return err },
		}
		for name, op := range ops {
			if err := op(); !errors.Is(err, c.want) {
				t.Errorf("%s by %+v: %v, want %v", name, c.actor, err, c.want)
			}
		}
	}
}
