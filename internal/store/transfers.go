package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// Transfers moves a region's share of a SKU's stock to another region and takes in what
// others give it (escrow, migration 0014). The region's database holds its share as its
// inventory rows; a transfer is asked for (stock.transfer_requested), granted by the
// giver (its debit, its stock_transfers_out row and the stock.transfer_granted event in
// one transaction, so a grant is announced exactly when it is debited) and credited by
// the asker once per transfer id, whatever the duplicates. Between the grant and the
// credit the units are in transit: a partition holds them there, it never makes more.
type Transfers struct {
	db     *bun.DB
	now    func() time.Time
	region string
}

// NewTransfers returns the transfers of region, whose database is db; now is its clock.
func NewTransfers(db *bun.DB, now func() time.Time, region string) *Transfers {
	if now == nil {
		panic("store: NewTransfers needs a clock")
	}
	return &Transfers{db: db, now: now, region: region}
}

// Grant answers a request addressed to this region: it gives at most req.Quantity units
// of req.SKU, keeping keep units available here (what this region sells before its next
// restock; when the asker has sold out, only half of what is available here), and never
// a unit that an unpaid order holds. It debits the warehouses with
// the most available first and writes the grant (its outgoing record and the
// stock.transfer_granted event) in the same transaction. A request granted before (the
// same TransferID, delivered again) is answered with that grant and changes nothing.
func (t *Transfers) Grant(ctx context.Context, req event.TransferPayload, keep int) (event.TransferPayload, error) {
	if req.From != t.region || req.To == t.region || req.To == "" || req.Quantity <= 0 || req.SKU == "" || req.Warehouse == "" {
		return event.TransferPayload{}, checkout.Errorf(checkout.InvalidInput, nil, "transfer %s is not a request to region %s: %+v", req.TransferID, t.region, req)
	}
	grant := req
	err := InTx(ctx, t.db, func(ctx context.Context, tx bun.Tx) error {
		now := t.now()
		res, err := tx.ExecContext(ctx, `INSERT INTO stock_transfers_out (id, sku, to_region, asked, given, granted_at)
			VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO NOTHING`, req.TransferID, req.SKU, req.To, req.Quantity, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			// Granted before: its event is in the outbox already.
			return tx.NewRaw(`SELECT given FROM stock_transfers_out WHERE id = ?`, req.TransferID).Scan(ctx, &grant.Quantity)
		}
		// The rows are locked in (sku, warehouse) order, as checkouts lock them.
		var levels []struct {
			Warehouse string
			Available int
		}
		if err := tx.NewRaw(`SELECT warehouse, on_hand - reserved AS available FROM inventory
			WHERE sku = ? ORDER BY warehouse FOR NO KEY UPDATE`, req.SKU).Scan(ctx, &levels); err != nil {
			return err
		}
		total := 0
		for _, l := range levels {
			total += l.Available
		}
		spare := total - keep
		if req.SoldOut {
			spare = max(spare, (total+1)/2)
		}
		grant.Quantity = min(req.Quantity, max(0, spare))
		left := grant.Quantity
		for left > 0 {
			best := -1
			for i, l := range levels {
				if l.Available > 0 && (best < 0 || l.Available > levels[best].Available) {
					best = i
				}
			}
			take := min(left, levels[best].Available)
			if _, err := tx.ExecContext(ctx, `UPDATE inventory SET on_hand = on_hand - ?, version = version + 1, updated_at = ?
				WHERE sku = ? AND warehouse = ?`, take, now, req.SKU, levels[best].Warehouse); err != nil {
				return err
			}
			levels[best].Available -= take
			left -= take
		}
		if _, err := tx.ExecContext(ctx, `UPDATE stock_transfers_out SET given = ? WHERE id = ?`, grant.Quantity, req.TransferID); err != nil {
			return err
		}
		payload, err := json.Marshal(grant)
		if err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, event.Envelope{ID: req.TransferID, Type: event.StockTransferGranted,
			AggregateID: "transfer:" + req.TransferID, OccurredAt: now, Payload: payload,
			Headers: map[string]string{event.ToRegionHeader: req.To}})
	})
	if err != nil {
		if PgCode(err) == "23503" {
			return event.TransferPayload{}, checkout.Errorf(checkout.UnknownSKU, []string{"sku"}, "unknown sku %q", req.SKU)
		}
		return event.TransferPayload{}, mapErr(fmt.Errorf("grant transfer %s: %w", req.TransferID, err))
	}
	return grant, nil
}

// Credit takes in a grant addressed to this region, once: the units go to the grant's
// warehouse here, and the request it answers is marked answered. It reports whether this call credited it (false: credited before, a
// duplicate).
func (t *Transfers) Credit(ctx context.Context, grant event.TransferPayload) (bool, error) {
	if grant.To != t.region || grant.From == t.region || grant.Quantity < 0 || grant.Warehouse == "" {
		return false, checkout.Errorf(checkout.InvalidInput, nil, "transfer %s is not a grant to region %s: %+v", grant.TransferID, t.region, grant)
	}
	credited := false
	err := InTx(ctx, t.db, func(ctx context.Context, tx bun.Tx) error {
		now := t.now()
		res, err := tx.ExecContext(ctx, `INSERT INTO stock_transfers_in (id, sku, from_region, warehouse, quantity, credited_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, grant.TransferID, grant.SKU, grant.From, grant.Warehouse, grant.Quantity, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		credited = true
		if _, err := tx.ExecContext(ctx, `UPDATE stock_transfer_requests SET given = ?, answered_at = ? WHERE id = ?`,
			grant.Quantity, now, grant.TransferID); err != nil {
			return err
		}
		if grant.Quantity == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO inventory (sku, warehouse, on_hand, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = inventory.on_hand + EXCLUDED.on_hand,
				version = inventory.version + 1, updated_at = EXCLUDED.updated_at`, grant.SKU, grant.Warehouse, grant.Quantity, now)
		return err
	})
	if err != nil {
		return false, mapErr(fmt.Errorf("credit transfer %s: %w", grant.TransferID, err))
	}
	return credited, nil
}

// Ledger reads, in one snapshot of this region's database, what the escrow checker
// needs: each SKU's on_hand over its warehouses (less the sales not yet folded into
// inventory: what was received and not sold), and the transfers given and credited.
func (t *Transfers) Ledger(ctx context.Context) (checkout.RegionLedger, error) {
	l := checkout.RegionLedger{Region: t.region, OnHand: map[string]int{}, Given: map[string]checkout.TransferRecord{},
		Credited: map[string]checkout.TransferRecord{}}
	err := t.db.RunInTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}, func(ctx context.Context, tx bun.Tx) error {
		var stock []struct {
			SKU    string
			OnHand int
		}
		if err := tx.NewRaw(`SELECT sku, sum(on_hand)::int AS on_hand FROM inventory_levels GROUP BY sku`).Scan(ctx, &stock); err != nil {
			return err
		}
		for _, s := range stock {
			l.OnHand[s.SKU] = s.OnHand
		}
		var given, credited []struct {
			ID, SKU, Region string
			Quantity        int
		}
		if err := tx.NewRaw(`SELECT id::text, sku, to_region AS region, given AS quantity FROM stock_transfers_out`).Scan(ctx, &given); err != nil {
			return err
		}
		if err := tx.NewRaw(`SELECT id::text, sku, from_region AS region, quantity FROM stock_transfers_in`).Scan(ctx, &credited); err != nil {
			return err
		}
		for _, g := range given {
			l.Given[g.ID] = checkout.TransferRecord{SKU: g.SKU, Region: g.Region, Quantity: g.Quantity}
		}
		for _, c := range credited {
			l.Credited[c.ID] = checkout.TransferRecord{SKU: c.SKU, Region: c.Region, Quantity: c.Quantity}
		}
		return nil
	})
	if err != nil {
		return checkout.RegionLedger{}, mapErr(fmt.Errorf("escrow ledger: %w", err))
	}
	return l, nil
}

// Ask runs one rebalancing round of this region: for every SKU whose available stock
// here is below opt.Low and that was not asked for recently, it records a request for
// opt.Target less what is available and writes its stock.transfer_requested event,
// addressed to the next of peers in turn, in one transaction. One instance of the
// region asks at a time (the round takes a transaction-level advisory lock, and an
// instance that finds it taken skips its round). It returns the requests made.
func (t *Transfers) Ask(ctx context.Context, peers []string, opt checkout.AskOptions) ([]event.TransferPayload, error) {
	if len(peers) == 0 || opt.Target <= opt.Low || opt.Low < 1 || opt.Warehouse == "" {
		return nil, fmt.Errorf("store: ask with peers %v and options %+v: peers, 1 <= Low < Target and a warehouse are needed", peers, opt)
	}
	var asked []event.TransferPayload
	err := InTx(ctx, t.db, func(ctx context.Context, tx bun.Tx) error {
		var mine bool
		if err := tx.NewRaw("SELECT pg_try_advisory_xact_lock(hashtext('checkout.rebalancer'))").Scan(ctx, &mine); err != nil {
			return err
		}
		if !mine {
			return nil
		}
		now := t.now()
		var short []struct {
			SKU       string
			Available int
			Warehouse string
			Before    int
		}
		if err := tx.NewRaw(`SELECT p.sku, COALESCE(a.available, 0) AS available,
				COALESCE((SELECT min(i.warehouse) FROM inventory i WHERE i.sku = p.sku), ?) AS warehouse,
				(SELECT count(*) FROM stock_transfer_requests r WHERE r.sku = p.sku) AS before
			FROM products p LEFT JOIN stock_available a ON a.sku = p.sku
			WHERE COALESCE(a.available, 0) < ?
			AND NOT EXISTS (SELECT 1 FROM stock_transfer_requests r WHERE r.sku = p.sku
				AND (r.requested_at > ? OR (r.given = 0 AND r.answered_at > ?)))
			ORDER BY p.sku LIMIT 1000`, opt.Warehouse, opt.Low, now.Add(-opt.Reask), now.Add(-opt.Idle)).Scan(ctx, &short); err != nil {
			return err
		}
		for _, s := range short {
			req := event.TransferPayload{TransferID: uuid.Must(uuid.NewV7()).String(), SKU: s.SKU,
				Quantity: opt.Target - max(0, s.Available), From: peers[s.Before%len(peers)], To: t.region,
				Warehouse: s.Warehouse, SoldOut: s.Available <= 0}
			if _, err := tx.ExecContext(ctx, `INSERT INTO stock_transfer_requests (id, sku, from_region, warehouse, asked, requested_at)
				VALUES (?, ?, ?, ?, ?, ?)`, req.TransferID, req.SKU, req.From, req.Warehouse, req.Quantity, now); err != nil {
				return err
			}
			payload, err := json.Marshal(req)
			if err != nil {
				return err
			}
			if err := outbox.Insert(ctx, tx, event.Envelope{ID: req.TransferID, Type: event.StockTransferRequested,
				AggregateID: "transfer:" + req.TransferID, OccurredAt: now, Payload: payload,
				Headers: map[string]string{event.ToRegionHeader: req.From}}); err != nil {
				return err
			}
			asked = append(asked, req)
		}
		return nil
	})
	if err != nil {
		return nil, mapErr(fmt.Errorf("ask for stock: %w", err))
	}
	return asked, nil
}
