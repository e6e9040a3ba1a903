package checkout

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAllocate(t *testing.T) {
	t.Parallel()
	levels := []StockLevel{{"east", 3}, {"west", 5}, {"north", 5}}
	tests := []struct {
		name  string
		qty   int
		want  map[string]int
		avail int
	}{
		{"OneWarehouseServes_FullestFirst_TieByName", 4, map[string]int{"north": 4}, 13},
		{"SplitsOverWarehouses", 12, map[string]int{"north": 5, "west": 5, "east": 2}, 13},
		{"AllOfIt", 13, map[string]int{"north": 5, "west": 5, "east": 3}, 13},
		{"Short_NilAndTotal", 14, nil, 13},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, avail := Allocate(levels, tc.qty)
			if !reflect.DeepEqual(got, tc.want) || avail != tc.avail {
				t.Fatalf("Allocate(%d) = %v, %d; want %v, %d", tc.qty, got, avail, tc.want, tc.avail)
			}
		})
	}
	t.Run("NegativeAvailableCountsAsNone", func(t *testing.T) {
		if got, avail := Allocate([]StockLevel{{"a", -2}, {"b", 1}}, 1); got["b"] != 1 || avail != 1 {
			t.Fatalf("got %v %d", got, avail)
		}
	})
}

func TestOutOfStockError_NamesTheLine(t *testing.T) {
	t.Parallel()
	e := OutOfStockError([]string{"input", "items"}, 2, "SKU", 1, 3)
	if e.Code != OutOfStock || strings.Join(e.Field, ".") != "input.items.2.quantity" || !strings.Contains(e.Message, "only 1 of SKU") {
		t.Fatalf("%+v", e)
	}
	if e := OutOfStockError([]string{"input", "cartId"}, 2, "SKU", -1, 3); strings.Join(e.Field, ".") != "input.cartId" || !strings.Contains(e.Message, "only 0") {
		t.Fatalf("cart line: %+v", e)
	}
}

func TestStockMoveFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from, to Status
		want     StockMove
	}{
		{StatusPendingPayment, StatusPaid, StockSell},
		{StatusPendingPayment, StatusPaymentFailed, StockRelease},
		{StatusPendingPayment, StatusExpired, StockRelease},
		{StatusPendingPayment, StatusCancelled, StockRelease},
		{StatusPaid, StatusCancelled, StockRestock},
		{StatusPaid, StatusShipped, StockNone},
	}
	for _, tc := range tests {
		if got := StockMoveFor(tc.from, tc.to); got != tc.want {
			t.Errorf("%s -> %s: %s, want %s", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestOrderApply(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	t.Run("PaidThenCancelled_RestocksAndAsksForARefund", func(t *testing.T) {
		o := &Order{Status: StatusPendingPayment, Sequence: 1}
		eff, err := o.Apply(Change{To: StatusPaid}, now)
		if err != nil || eff.Stock != StockSell || eff.RefundReason != "" || o.Status != StatusPaid || o.Sequence != 2 || !o.UpdatedAt.Equal(now) {
			t.Fatalf("pay: %+v %+v %v", o, eff, err)
		}
		eff, err = o.Apply(Change{To: StatusCancelled}, now)
		if err != nil || eff.Stock != StockRestock || eff.RefundReason == "" || o.Sequence != 3 {
			t.Fatalf("cancel paid: %+v %+v %v", o, eff, err)
		}
	})
	t.Run("SetsTrackingAndReason", func(t *testing.T) {
		tr, why := "1Z", "card_declined"
		o := &Order{Status: StatusPaid, Sequence: 2}
		if _, err := o.Apply(Change{To: StatusShipped, TrackingNumber: &tr}, now); err != nil || *o.TrackingNumber != "1Z" {
			t.Fatalf("%+v %v", o, err)
		}
		o = &Order{Status: StatusPendingPayment}
		if _, err := o.Apply(Change{To: StatusPaymentFailed, PaymentFailureReason: &why}, now); err != nil || *o.PaymentFailureReason != why {
			t.Fatalf("%+v %v", o, err)
		}
	})
	t.Run("NotAllowed_InvalidTransition_Unchanged", func(t *testing.T) {
		for _, tc := range []struct{ from, to Status }{
			{StatusShipped, StatusCancelled}, {StatusPendingPayment, StatusShipped}, {StatusExpired, StatusPaid}, {StatusPaid, StatusPaid},
		} {
			o := &Order{Status: tc.from, Sequence: 4}
			_, err := o.Apply(Change{To: tc.to}, now)
			if ErrorCode(err) != InvalidTransition || o.Status != tc.from || o.Sequence != 4 || !o.UpdatedAt.IsZero() {
				t.Errorf("%s -> %s: %v, order %+v", tc.from, tc.to, err, o)
			}
		}
	})
	t.Run("EmptyChange_NothingMoves", func(t *testing.T) {
		o := &Order{Status: StatusPaid, Sequence: 2}
		if eff, err := o.Apply(Change{}, now); err != nil || eff != (Effects{}) || o.Sequence != 2 {
			t.Fatalf("%+v %v", eff, err)
		}
	})
}

func TestDecidePayment(t *testing.T) {
	t.Parallel()
	ok := PaymentResult{Status: PaymentSucceeded}
	tests := []struct {
		name   string
		status Status
		r      PaymentResult
		to     Status
		reason string
		refund bool
	}{
		{"PendingSucceeded_Paid", StatusPendingPayment, ok, StatusPaid, "", false},
		{"PendingDeclined_FailedWithReason", StatusPendingPayment, PaymentResult{Status: PaymentDeclined, Reason: "insufficient_funds"}, StatusPaymentFailed, "insufficient_funds", false},
		{"PendingDeclinedNoReason_Declined", StatusPendingPayment, PaymentResult{Status: PaymentDeclined}, StatusPaymentFailed, "declined", false},
		{"RequiresAction_Waits", StatusPendingPayment, PaymentResult{Status: PaymentRequiresAction}, "", "", false},
		{"SucceededAfterExpiry_Refund", StatusExpired, ok, "", "", true},
		{"SucceededAfterCancel_Refund", StatusCancelled, ok, "", "", true},
		{"SucceededAfterDecline_Refund", StatusPaymentFailed, ok, "", "", true},
		{"SucceededTwice_Nothing", StatusPaid, ok, "", "", false},
		{"DeclinedAfterPaid_Nothing", StatusPaid, PaymentResult{Status: PaymentDeclined}, "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DecidePayment(&Order{Status: tc.status}, tc.r)
			if d.Change.To != tc.to || d.Refund != tc.refund {
				t.Fatalf("%+v", d)
			}
			if tc.reason != "" && (d.Change.PaymentFailureReason == nil || *d.Change.PaymentFailureReason != tc.reason) {
				t.Fatalf("reason %v", d.Change.PaymentFailureReason)
			}
			if tc.refund && !strings.Contains(d.Note, "refund was requested") {
				t.Fatalf("note %q", d.Note)
			}
		})
	}
}

func TestPayment_AcceptsAndMatches(t *testing.T) {
	t.Parallel()
	ok, declined := PaymentResult{Status: PaymentSucceeded}, PaymentResult{Status: PaymentDeclined}
	var none *Payment
	if !none.Accepts(declined) {
		t.Error("no payment yet refuses a report")
	}
	for status, want := range map[string][2]bool{ // [accepts success, accepts decline]
		PaymentAttempted: {true, true}, PaymentRequiresAction: {true, true}, PaymentDeclined: {true, true},
		PaymentSucceeded: {true, false}, PaymentRefundPending: {false, false}, PaymentRefunded: {false, false},
	} {
		p := &Payment{Status: status}
		if p.Accepts(ok) != want[0] || p.Accepts(declined) != want[1] {
			t.Errorf("%s: accepts success %v decline %v, want %v", status, p.Accepts(ok), p.Accepts(declined), want)
		}
	}
	p := &Payment{AmountCents: 1000, Currency: "USD"}
	if !p.Matches(1000, "usd") || p.Matches(50, "USD") || p.Matches(1000, "EUR") || none.Matches(1000, "USD") {
		t.Error("Matches")
	}
}

func TestPriceLines(t *testing.T) {
	t.Parallel()
	prices := map[string]Price{"A": {250, "USD"}, "B": {100, "USD"}, "E": {100, "EUR"}}
	items, total, cur, err := PriceLines([]Line{{"A", 2}, {"B", 3}}, prices, []string{"input", "items"}, false)
	if err != nil || total != 800 || cur != "USD" || items[0].UnitPriceCents != 250 || items[1].Quantity != 3 {
		t.Fatalf("%+v %d %s %v", items, total, cur, err)
	}
	_, _, _, err = PriceLines([]Line{{"A", 1}, {"X", 1}}, prices, []string{"input", "items"}, false)
	if e, _ := AsError(err); e == nil || e.Code != UnknownSKU || strings.Join(e.Field, ".") != "input.items.1.sku" {
		t.Fatalf("unknown sku: %v", err)
	}
	_, _, _, err = PriceLines([]Line{{"A", 1}, {"E", 1}}, prices, []string{"input", "cartId"}, true)
	if e, _ := AsError(err); e == nil || e.Code != InvalidInput || strings.Join(e.Field, ".") != "input.cartId" {
		t.Fatalf("two currencies: %v", err)
	}
}

func TestNormalizeLines(t *testing.T) {
	t.Parallel()
	f := []string{"input", "items"}
	got, err := NormalizeLines([]Line{{"A", 2}, {"B", 1}, {"A", 3}}, f)
	if err != nil || !reflect.DeepEqual(got, []Line{{"A", 5}, {"B", 1}}) {
		t.Fatalf("%v %v", got, err)
	}
	for name, tc := range map[string]struct {
		lines []Line
		code  Code
	}{
		"Empty":          {nil, CartEmpty},
		"BadSKU":         {[]Line{{"a b", 1}}, UnknownSKU},
		"Zero":           {[]Line{{"A", 0}}, InvalidQuantity},
		"MergedOverMax":  {[]Line{{"A", MaxLineQuantity}, {"A", 1}}, InvalidQuantity},
		"TooManyLines":   {make([]Line, MaxLines+1), InvalidInput},
		"OverMaxOnALine": {[]Line{{"A", MaxLineQuantity + 1}}, InvalidQuantity},
	} {
		if _, err := NormalizeLines(tc.lines, f); ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", name, err, tc.code)
		}
	}
}

func TestValidatePaymentToken(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"tok_visa", "pm_card_visa", "tok_chargeDeclined"} {
		if err := ValidatePaymentToken(tok); err != nil {
			t.Errorf("%s: %v", tok, err)
		}
	}
	for _, tok := range []string{"4242424242424242", "4242 4242 4242 4242", "4242_4242_4242_4242", "tok_4242424242424242", "", "tok visa", strings.Repeat("a", 256)} {
		err := ValidatePaymentToken(tok)
		if ErrorCode(err) != InvalidPaymentToken {
			t.Errorf("%q: %v", tok, err)
		}
		if tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("the refusal echoes the token: %v", err)
		}
	}
}

// fakeOrders is an in-memory OrderStore for the service's rules.
type fakeOrders struct {
	OrderStore
	orders map[string]*Order
}

func (f *fakeOrders) Transition(_ context.Context, id string, decide func(o *Order) (Change, error)) (Order, error) {
	o, ok := f.orders[id]
	if !ok {
		return Order{}, Errorf(NotFound, []string{"id"}, "order not found")
	}
	cp := *o
	ch, err := decide(&cp)
	if err != nil {
		return Order{}, err
	}
	if _, err := cp.Apply(ch, time.Now()); err != nil {
		return Order{}, err
	}
	*o = cp
	return cp, nil
}

func TestService_Authorization(t *testing.T) {
	t.Parallel()
	const id = "0192d3e4-5a6b-7c8d-9e0f-123456789012"
	newSvc := func(status Status) (*Service, *fakeOrders) {
		f := &fakeOrders{orders: map[string]*Order{id: {ID: id, CustomerID: "alice", Status: status}}}
		s, err := NewService(f, nilCarts{}, time.Minute, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		return s, f
	}
	ctx := context.Background()
	s, _ := newSvc(StatusPaid)
	if _, err := s.ShipOrder(ctx, Actor{CustomerID: "alice"}, id, "1Z"); !errors.Is(err, ErrForbidden) {
		t.Errorf("customer ships: %v", err)
	}
	if _, err := s.ShipOrder(ctx, Actor{}, id, "1Z"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("anonymous ships: %v", err)
	}
	if _, err := s.CancelOrder(ctx, Actor{CustomerID: "bob"}, id); ErrorCode(err) != NotFound {
		t.Errorf("another customer cancels: %v", err)
	}
	if o, err := s.ShipOrder(ctx, Actor{CustomerID: "ops", Admin: true}, id, " 1Z "); err != nil || o.Status != StatusShipped || *o.TrackingNumber != "1Z" {
		t.Errorf("admin ships: %+v %v", o, err)
	}
	if _, err := s.CancelOrder(ctx, Actor{CustomerID: "alice"}, id); ErrorCode(err) != OrderNotCancellable {
		t.Errorf("cancel shipped: %v", err)
	}
	s, f := newSvc(StatusPendingPayment)
	if o, err := s.CancelOrder(ctx, Actor{CustomerID: "ops", Admin: true}, id); err != nil || o.Status != StatusCancelled || f.orders[id].Status != StatusCancelled {
		t.Errorf("admin cancels: %+v %v", o, err)
	}
	if err := RequireAdmin(Actor{CustomerID: "p", Partner: true}); !errors.Is(err, ErrForbidden) {
		t.Errorf("partner is not admin: %v", err)
	}
}

type nilCarts struct{ CartStore }

// TestL11_PaymentToken_CardSplitByUnderscoresOrLetters_Refused: a card number split by
// three or more underscores or by letters is refused as a card number, and real-looking
// provider tokens still pass.
func TestL11_PaymentToken_CardSplitByUnderscoresOrLetters_Refused(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"4242___4242___4242___4242", "4242abc4242def4242ghi4242", "tok_4242x4242y4242z4242", "pm_4242_a__4242_b_4242c4242"} {
		err := ValidatePaymentToken(tok)
		if ErrorCode(err) != InvalidPaymentToken || !strings.Contains(err.Error(), "never a card number") {
			t.Errorf("%q: %v, want %s as a card number", tok, err, InvalidPaymentToken)
		}
	}
	for _, tok := range []string{"tok_visa", "pm_card_visa", "pm_1NqZ8sLkdIwHu7ixVcS2oX3a", "tok_1MqFz2LkdIwHu7ixQyZ9Xb4c", "pm_card_threeDSecure2Required"} {
		if err := ValidatePaymentToken(tok); err != nil {
			t.Errorf("%s: %v", tok, err)
		}
	}
}
