package stripe_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/stripe"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// startStripeMock builds stripe-mock (the module's `go tool stripe-mock`)
// and runs it on a loopback port the system picks, until the test ends. It
// returns the API base URL. The test is skipped only if the binary cannot
// be built, and never under CI (testutil.Required): there it fails.
func startStripeMock(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	buildCtx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// -n builds the tool if needed and prints its path instead of running
	// it, so the test owns the stripe-mock process itself (no `go` parent
	// left between the test and the server).
	var stderr bytes.Buffer
	build := exec.CommandContext(buildCtx, goBin, "tool", "-n", "stripe-mock")
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		testutil.Required(t, "stripe-mock cannot be built with `go tool -n stripe-mock`: %v\n%s", err, stderr.String())
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) == 0 {
		testutil.Required(t, "`go tool -n stripe-mock` printed no binary path")
	}
	bin := lines[len(lines)-1]

	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting stripe-mock: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	addrc := make(chan string, 1)
	go func() {
		const prefix = "Listening for HTTP at address: "
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				addrc <- strings.TrimSpace(addr)
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatal("stripe-mock did not report its HTTP address within 30s")
	}
	testutil.Eventually(t, 10*time.Second, "stripe-mock to accept connections at "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr
}

// TestStripeMock checks the adapter's requests against Stripe's OpenAPI
// spec: stripe-mock validates every parameter and answers with canned
// fixtures (its PaymentIntent's status is fixed, whatever the card).
func TestStripeMock(t *testing.T) {
	t.Parallel()
	base := startStripeMock(t)
	g := newGateway(t, base, 5*time.Second)
	ctx := context.Background()

	c, err := g.Charge(ctx, chargeReq("pm_card_visa", "order-7/charge/mock"))
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	if !strings.HasPrefix(c.ProviderPaymentID, "pi_") {
		t.Fatalf("ProviderPaymentID = %q, want a pi_ id", c.ProviderPaymentID)
	}
	switch c.Status {
	case payment.StatusSucceeded, payment.StatusRequiresAction, payment.StatusDeclined:
	default:
		t.Fatalf("Status = %q", c.Status)
	}
	if c.AmountCents != 4200 {
		t.Fatalf("AmountCents = %d, want 4200 (stripe-mock reflects the amount)", c.AmountCents)
	}
	t.Logf("stripe-mock charge: %+v", c)

	ref, err := g.Refund(ctx, payment.RefundRequest{
		OrderID: "order-7", ProviderPaymentID: c.ProviderPaymentID, AmountCents: 1000,
		IdempotencyKey: "order-7/refund/mock", Reason: "requested_by_customer",
	})
	if err != nil {
		t.Fatalf("Refund: %v", err)
	}
	if !strings.HasPrefix(ref.ProviderRefundID, "re_") || ref.Status == "" {
		t.Fatalf("Refund = %+v, want a re_ id and a status", ref)
	}

	// stripe-mock refuses a malformed key (401): a permanent error.
	badKey, err := stripe.New(stripe.Config{SecretKey: "not-a-stripe-key", APIBase: base})
	if err != nil {
		t.Fatal(err)
	}
	_, err = badKey.Charge(ctx, chargeReq("pm_card_visa", "order-7/charge/mock-bad-key"))
	var pe *payment.PermanentError
	if !errors.As(err, &pe) || pe.HTTPStatus != 401 {
		t.Fatalf("malformed key: err = %v, want a 401 *PermanentError", err)
	}
	if strings.Contains(err.Error(), "not-a-stripe-key") {
		t.Fatalf("error %q contains the API key", err)
	}
	t.Logf("malformed key: %v", err)
}
