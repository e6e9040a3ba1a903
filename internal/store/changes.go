package store

import (
	"context"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/pgprep"
	"github.com/checkout-backend/checkout/outbox"
)

// changes collects what a batch of order changes writes, so that any number of orders
// (a settlement batch of the payment workers, or one order) is a handful of statements
// in one round trip: the sales of all of them in one, the stock they give back in two,
// their rows in one, their payment records in one, their events in one. Refund requests
// and notes, rare, follow one by one.
type changes struct {
	sold     []orderAt // held units sold (a payment)
	released []orderAt // held units back on sale (a decline, an expiry, a cancellation)
	restock  []orderAt // sold units back on hand (a paid order cancelled)
	orders   []orderChange
	payments []paymentRecord
	events   []event.Envelope
	after    script // refund requests and notes, after the payment records
}

type orderAt struct {
	id string
	at time.Time
}

type orderChange struct {
	o    checkout.Order
	from checkout.Status
}

type paymentRecord struct {
	rep checkout.PaymentReport
	at  time.Time
}

// add adds the changes of o.
func (c *changes) add(o changes) {
	c.sold = append(c.sold, o.sold...)
	c.released = append(c.released, o.released...)
	c.restock = append(c.restock, o.restock...)
	c.orders = append(c.orders, o.orders...)
	c.payments = append(c.payments, o.payments...)
	c.events = append(c.events, o.events...)
	c.after.append(o.after)
}

// stock adds an order's stock move.
func (c *changes) stock(orderID string, m checkout.StockMove, at time.Time) {
	switch m {
	case checkout.StockSell:
		c.sold = append(c.sold, orderAt{orderID, at})
	case checkout.StockRelease:
		c.released = append(c.released, orderAt{orderID, at})
	case checkout.StockRestock:
		c.restock = append(c.restock, orderAt{orderID, at})
	}
}

// script is what saves the changes, in this order: stock (inventory rows locked once, in
// (sku, warehouse) order, so a batch never deadlocks with a checkout), orders, payment
// records, events, then refund requests and notes (which read the payment records).
func (c *changes) script(ctx context.Context) (script, error) {
	var sc script
	if len(c.sold) > 0 {
		ids, at := split(c.sold)
		sc.addHot(hotSell, pgArray(ids), pgArray(at), pgArray(ids))
	}
	if len(c.released)+len(c.restock) > 0 {
		rel, _ := split(c.released)
		res, _ := split(c.restock)
		sc.addHot(hotLockReturned, pgArray(rel), pgArray(res))
	}
	for _, m := range []struct {
		orders   []orderAt
		from, to string
		stmt     *pgprep.Statement
	}{
		{c.released, "HELD", "RELEASED", hotRelease},
		{c.restock, "SOLD", "RELEASED", hotRestock},
	} {
		if len(m.orders) == 0 {
			continue
		}
		ids, at := split(m.orders)
		sc.addHot(m.stmt, m.to, pgArray(ids), pgArray(at), m.from, pgArray(ids))
	}
	if n := len(c.orders); n > 0 {
		ids, status, from := make([]string, n), make([]string, n), make([]string, n)
		at, seq := make([]time.Time, n), make([]int, n)
		tracking, reason := make([]*string, n), make([]*string, n)
		for i, ch := range c.orders {
			ids[i], status[i], from[i] = ch.o.ID, string(ch.o.Status), string(ch.from)
			at[i], seq[i], tracking[i], reason[i] = ch.o.UpdatedAt, ch.o.Sequence, ch.o.TrackingNumber, ch.o.PaymentFailureReason
		}
		// The token is kept only while the order may still be charged.
		sc.addHot(hotUpdateOrders,
			pgArray(ids), pgArray(status), pgArray(from), pgArray(at), pgArray(seq), pgArray(tracking), pgArray(reason), pgArray(ids))
	}
	if n := len(c.payments); n > 0 {
		ids, prov, cur, status := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		provID, reason := make([]*string, n), make([]*string, n)
		amount, at := make([]int64, n), make([]time.Time, n)
		for i, p := range c.payments {
			r := p.rep
			ids[i], prov[i], cur[i], status[i], amount[i], at[i] = r.OrderID, r.Provider, r.Currency, r.Result.Status, r.AmountCents, p.at
			if r.ProviderPaymentID != "" {
				provID[i] = &r.ProviderPaymentID
			}
			if r.Result.Status == checkout.PaymentDeclined {
				reason[i] = &r.Result.Reason
			}
		}
		sc.addHot(hotRecordPayments,
			pgArray(ids), pgArray(prov), pgArray(provID), pgArray(amount), pgArray(cur), pgArray(status), pgArray(reason), pgArray(at))
	}
	if len(c.events) > 0 {
		args, err := outbox.InsertArgs(ctx, c.events)
		if err != nil {
			return script{}, err
		}
		sc.addHot(outbox.InsertSQL, args...)
	}
	sc.append(c.after)
	return sc, nil
}

// exec runs the changes in tx in one round trip.
func (c *changes) exec(ctx context.Context, tx bun.IDB) error {
	sc, err := c.script(ctx)
	if err != nil {
		return err
	}
	return sc.exec(ctx, tx)
}

func split(os []orderAt) ([]string, []time.Time) {
	ids, at := make([]string, len(os)), make([]time.Time, len(os))
	for i, o := range os {
		ids[i], at[i] = o.id, o.at
	}
	return ids, at
}
