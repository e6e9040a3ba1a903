package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A probe measures or checks something around one workload's attack and reports it as
// a Section. Probes read the database (runEnv.db): what the service stores (timestamps
// above all) is read back in After; one that must sample during the attack starts its
// poller in Before and stops it in After.
type probe interface {
	// Name is the title of the probe's section.
	Name() string
	// Before runs once the workload's catalog exists, right before the attack.
	Before(ctx context.Context, env *runEnv) error
	// After runs once the attack has ended (every answer is in); it adds the probe's
	// section, and a failure for each broken guarantee, to r.
	After(ctx context.Context, env *runEnv, r *Report) error
}

// probes is the registry: a fresh set is made for every workload, run in this order.
var probes = []func() probe{
	func() probe { return integrityProbe{} },
	func() probe { return pipelineProbe{} },
}

// liveStatuses are the order statuses that hold or consumed stock.
var liveStatuses = []string{"PENDING_PAYMENT", "PAID", "SHIPPED"}

// integrityProbe reads the workload's stock and orders back from the database, in one
// snapshot, and checks that nothing was oversold:
//   - no inventory row has reserved > on_hand;
//   - no SKU has more units in live orders (PENDING_PAYMENT, PAID, SHIPPED) than the
//     stock it started with;
//   - per SKU, reserved + sold == units in live orders, where sold = initial stock -
//     on_hand (a paid order's reservation leaves on_hand with the sale);
//   - every order the API acknowledged is in the database.
type integrityProbe struct{}

func (integrityProbe) Name() string { return "integrity (read back from the database)" }

func (integrityProbe) Before(context.Context, *runEnv) error { return nil }

func (p integrityProbe) After(ctx context.Context, env *runEnv, r *Report) error {
	skus := make([]string, len(env.catalog))
	initial := make(map[string]int, len(env.catalog))
	for i, c := range env.catalog {
		skus[i] = c.SKU
		initial[c.SKU] = c.InitialStock()
	}
	type stock struct{ onHand, reserved int }
	stocks := map[string]stock{}
	var ordered, statuses map[string]int
	badRows := 0

	// A repeatable-read snapshot: a payment worker may move orders along meanwhile,
	// but it changes an order and its stock in one transaction.
	err := pgx.BeginTxFunc(ctx, env.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT sku, sum(on_hand)::int, sum(reserved)::int, count(*) FILTER (WHERE reserved > on_hand)::int
			FROM inventory_levels WHERE sku = ANY($1) GROUP BY sku`, skus)
		if err != nil {
			return err
		}
		for rows.Next() {
			var sku string
			var s stock
			var bad int
			if err := rows.Scan(&sku, &s.onHand, &s.reserved, &bad); err != nil {
				return err
			}
			stocks[sku] = s
			badRows += bad
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if ordered, err = countBy(ctx, tx, `
			SELECT oi.sku, sum(oi.quantity)::int
			FROM order_items oi JOIN orders o ON o.id = oi.order_id
			WHERE oi.sku = ANY($1) AND o.status = ANY($2)
			GROUP BY oi.sku`, skus, liveStatuses); err != nil {
			return err
		}
		statuses, err = countBy(ctx, tx, `
			SELECT status, count(*)::int FROM orders
			WHERE left(customer_id, length($1)) = $1 GROUP BY status`, env.customerPrefix)
		return err
	})
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}

	var oversoldSKUs, overUnits, mismatched, totalOrdered, totalInitial int
	var examples []string
	for _, sku := range skus {
		s, o, init := stocks[sku], ordered[sku], initial[sku]
		totalOrdered += o
		totalInitial += init
		if o > init {
			oversoldSKUs++
			overUnits += o - init
		}
		if sold := init - s.onHand; s.reserved+sold != o {
			mismatched++
			if len(examples) < 3 {
				examples = append(examples, fmt.Sprintf("%s: reserved %d + sold %d != ordered %d", sku, s.reserved, sold, o))
			}
		}
	}
	inDB := 0
	for _, n := range statuses {
		inDB += n
	}

	sec := Section{Title: p.Name()}
	sec.Add("rows with reserved > on_hand", "%d", badRows)
	sec.Add("SKUs ordered beyond stock", "%d of %d (%d units over)", oversoldSKUs, len(skus), overUnits)
	if mismatched == 0 {
		sec.Add("reserved + sold == ordered", "yes, on all %d SKUs", len(skus))
	} else {
		sec.Add("reserved + sold == ordered", "NO on %d SKUs (%s)", mismatched, strings.Join(examples, "; "))
	}
	sec.Add("units ordered / stock", "%d / %d (%.1f%%)", totalOrdered, totalInitial, 100*float64(totalOrdered)/float64(max(totalInitial, 1)))
	sec.Add("orders in database", "%d (%s)", inDB, countsText(statuses))
	oversell := badRows + oversoldSKUs
	sec.Add("oversell", "%d", oversell)
	r.Sections = append(r.Sections, sec)

	if oversell > 0 {
		r.Fail("oversell %d: %d inventory rows with reserved > on_hand, %d SKUs ordered beyond their stock", oversell, badRows, oversoldSKUs)
	}
	if mismatched > 0 {
		r.Fail("reserved + sold != ordered on %d SKUs", mismatched)
	}
	if uint64(inDB) < r.Placed {
		r.Fail("%d orders acknowledged by the API but only %d in the database", r.Placed, inDB)
	}
	return nil
}
