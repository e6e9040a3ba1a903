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

// NewMaintenance returns the pruning adapter; now is the clock (time.Now when nil).
func NewMaintenance(db *bun.DB, now func() time.Time) *Maintenance {
	if now == nil {
		now = time.Now
	}
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
