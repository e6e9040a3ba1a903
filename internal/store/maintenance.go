package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Maintenance deletes what is kept only for a while: idempotency keys and the
// consumers' inbox rows (at least 24 hours, as the contract promises for keys), and
// published outbox rows.
type Maintenance struct {
	db  *bun.DB
	now func() time.Time
}

// NewMaintenance returns the pruning adapter; now is its clock (a nil clock panics).
func NewMaintenance(db *bun.DB, now func() time.Time) *Maintenance {
	mustClock("NewMaintenance", now)
	return &Maintenance{db: db, now: now}
}

// MinKeyRetention is the shortest time idempotency keys are kept.
const MinKeyRetention = 24 * time.Hour

// PruneKeys deletes idempotency keys and inbox rows older than retention.
func (m *Maintenance) PruneKeys(ctx context.Context, retention time.Duration) (int64, error) {
	if retention < MinKeyRetention {
		return 0, fmt.Errorf("retention %s is under the %s keys must be kept", retention, MinKeyRetention)
	}
	cutoff := m.now().Add(-retention)
	keys, err := deleteInBatches(ctx, m.db, "idempotency_keys", "created_at < ?", cutoff)
	if err != nil {
		return keys, err
	}
	inbox, err := deleteInBatches(ctx, m.db, "inbox", "processed_at < ?", cutoff)
	return keys + inbox, err
}

// PruneOutbox deletes outbox rows published longer than retention ago.
func (m *Maintenance) PruneOutbox(ctx context.Context, retention time.Duration) (int64, error) {
	return deleteInBatches(ctx, m.db, "outbox", "published_at IS NOT NULL AND published_at < ?", m.now().Add(-retention))
}

// pruneBatch bounds one DELETE, so pruning never holds many row locks or a long
// statement.
const pruneBatch = 5000

// deleteInBatches deletes the rows of table matching where, pruneBatch at a time.
func deleteInBatches(ctx context.Context, db bun.IDB, table, where string, args ...any) (int64, error) {
	var total int64
	q := fmt.Sprintf("DELETE FROM %s WHERE ctid IN (SELECT ctid FROM %s WHERE %s LIMIT %d)", table, table, where, pruneBatch)
	for {
		res, err := db.ExecContext(ctx, q, args...)
		if err != nil {
			return total, mapErr(fmt.Errorf("prune %s: %w", table, err))
		}
		n, _ := res.RowsAffected()
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// churnTables are the tables every order rewrites: the queue tables, whose rows live
// seconds (see migration 0009), and the order's own rows, each updated as the order moves
// (placed, paid, its reservation settled).
var churnTables = []string{"outbox", "stock_moves", "webhook_tasks", "inbox", "orders", "payments", "reservations", "inventory",
	"order_items", "idempotency_keys"}

// VacuumQueues vacuums (and analyzes) the tables every order churns when the server's
// autovacuum is off, which leaves them to grow dead rows for ever: the relay's claim
// then walks every dead index entry of the outbox (15 ms a claim, idle, after a
// minute of a flash sale on this machine), and after 100,000 orders every payment
// reads and updates rows among as many dead ones (a second minute at 800 orders/s fell
// 15 s behind; with these tables vacuumed it kept pace). A table needs it when its dead
// rows pass
// 5,000 and a tenth of its live ones. A table that only grew is analyzed when its rows
// changed since the last ANALYZE pass 50 and a tenth of its live ones (autovacuum's own
// threshold): a new ANALYZE makes every connection plan its prepared statements on that
// table again (pgprep), so a plan made while the table was small (a sequential scan)
// does not outlive the table's growth. With autovacuum on it does nothing: the tables'
// own autovacuum settings keep them in shape. It returns the tables it vacuumed or
// analyzed.
func (m *Maintenance) VacuumQueues(ctx context.Context) ([]string, error) {
	var on string
	if err := m.db.NewRaw("SELECT current_setting('autovacuum')").Scan(ctx, &on); err != nil {
		return nil, mapErr(fmt.Errorf("autovacuum setting: %w", err))
	}
	if on == "on" {
		return nil, nil
	}
	var due []struct {
		Name   string `bun:"name"`
		Vacuum bool   `bun:"vacuum"`
	}
	if err := m.db.NewRaw(`SELECT t.name, s.n_dead_tup > 5000 AND s.n_dead_tup > s.n_live_tup / 10 AS vacuum
		FROM unnest(?::text[]) AS t(name)
		JOIN pg_stat_user_tables s ON s.relid = to_regclass(t.name)
		WHERE (s.n_dead_tup > 5000 AND s.n_dead_tup > s.n_live_tup / 10) OR s.n_mod_since_analyze > 50 + s.n_live_tup / 10`,
		pgArray(churnTables)).Scan(ctx, &due); err != nil {
		return nil, mapErr(fmt.Errorf("queue tables' dead rows: %w", err))
	}
	var done []string
	for _, t := range due {
		// SKIP_LOCKED: another instance's sweeper vacuuming it already is enough.
		q := "ANALYZE (SKIP_LOCKED) " + t.Name
		if t.Vacuum {
			q = "VACUUM (ANALYZE, SKIP_LOCKED) " + t.Name
		}
		if _, err := m.db.ExecContext(ctx, q); err != nil {
			return done, mapErr(fmt.Errorf("%s: %w", q, err))
		}
		done = append(done, t.Name)
	}
	return done, nil
}
