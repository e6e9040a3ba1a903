package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/uptrace/bun"
)

// oneRow scans the row q selects (FOR UPDATE when lock) into a T, or returns nil when
// there is none.
func oneRow[T any](ctx context.Context, db bun.IDB, q string, lock bool, args ...any) (*T, error) {
	if lock {
		q += " FOR UPDATE"
	}
	var r T
	err := db.NewRaw(q, args...).Scan(ctx, &r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// wrapf is fmt.Errorf("what: %w", err), and nil for a nil err.
func wrapf(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
