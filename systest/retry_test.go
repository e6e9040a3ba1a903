package systest

import (
	"context"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/outbox"
)

// A consumer whose handling failed after its transaction committed (the connection lost
// at a database kill, as the failover tests do) schedules a retry of an event it has in
// fact recorded. Once the retry is published, the settle check of the failover tests
// (undelivered) counts nothing: its earlier form looked the retry's own row id up in the
// inbox, which records the event's id, never found it, and a failover test timed out on
// a sale that had settled. (That the inbox turns the redelivery away and nothing is
// charged twice is TestSaga_RelayCrashAfterConfirm_DuplicatesAbsorbed's.)
func TestSettleCheck_RetryOfAConsumedEvent_NotCountedUndelivered(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{})
	s.Product(t, "RETRY", 100, map[string]int{"w": 10})
	id := s.Checkout(t, "alice", "k1", "tok_visa", checkout.Line{SKU: "RETRY", Quantity: 1})
	s.WaitStatus(t, id, checkout.StatusPaid, 30*time.Second)

	var placed outbox.Row
	if err := s.DB.NewSelect().Model(&placed).ModelTableExpr("outbox AS row").
		Where("type = 'order.placed' AND destination IS NULL").Limit(1).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := outbox.ScheduleRetry(context.Background(), s.DB, "payment", placed.Envelope(), 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the retry published", func() bool {
		return count(t, s, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
	})
	if n := count(t, s, undelivered); n != 0 {
		t.Errorf("the settle check counts %d undelivered events once a retry of a consumed event is published", n)
	}
}
