package store

import (
	"context"
	"strings"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/pgprep"
)

// script is several statements sent in one round trip (the simple protocol runs them in
// order; the first that fails stops the rest and the transaction). Inside a checkout's
// transaction, every round trip saved is time the hot rows are not held.
type script struct {
	sql  []string
	hot  []*pgprep.Statement // hot[i], when set, is sent instead of sql[i] (its For)
	args []any
}

func (s *script) add(q string, args ...any) {
	s.sql = append(s.sql, q)
	s.hot = append(s.hot, nil)
	s.args = append(s.args, args...)
}

// addHot adds a prepared statement: EXECUTE on a pool that prepares, its text elsewhere.
func (s *script) addHot(st *pgprep.Statement, args ...any) {
	s.sql = append(s.sql, st.Text())
	s.hot = append(s.hot, st)
	s.args = append(s.args, args...)
}

// append adds the statements of o.
func (s *script) append(o script) {
	s.sql = append(s.sql, o.sql...)
	s.hot = append(s.hot, o.hot...)
	s.args = append(s.args, o.args...)
}

func (s *script) exec(ctx context.Context, tx bun.IDB) error {
	if len(s.sql) == 0 {
		return nil
	}
	sql := make([]string, len(s.sql))
	for i, q := range s.sql {
		if st := s.hot[i]; st != nil {
			q = st.For(tx)
		}
		sql[i] = q
	}
	_, err := tx.ExecContext(ctx, strings.Join(sql, ";\n"), s.args...)
	return err
}
