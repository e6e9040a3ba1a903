package store

import (
	"context"
	"strings"

	"github.com/uptrace/bun"
)

// script is several statements sent in one round trip (the simple protocol runs them in
// order; the first that fails stops the rest and the transaction). Inside a checkout's
// transaction, every round trip saved is time the hot rows are not held.
type script struct {
	sql  []string
	args []any
}

func (s *script) add(q string, args ...any) {
	s.sql = append(s.sql, q)
	s.args = append(s.args, args...)
}

// append adds the statements of o.
func (s *script) append(o script) {
	s.sql = append(s.sql, o.sql...)
	s.args = append(s.args, o.args...)
}

func (s *script) exec(ctx context.Context, tx bun.IDB) error {
	if len(s.sql) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, strings.Join(s.sql, ";\n"), s.args...)
	return err
}
