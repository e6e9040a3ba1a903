// Package pgprep keeps the hot statements of a paid order prepared on every connection
// of a pool that talks to PostgreSQL directly, so that PostgreSQL parses, analyses and
// plans each of them once per connection instead of once per call.
//
// bun writes a statement's arguments into its text, and the service talks the simple
// protocol (one round trip, several statements at once; PgBouncer in transaction mode
// carries nothing else): every call is a new text, which PostgreSQL parses and plans
// anew. On the development machine that was about a fifth of the CPU of a paid order
// (docs/performance.md). A Statement is registered once (New, at package init) with bun
// placeholders; every new connection of such a pool runs PREPARE for each (AfterConnect),
// and the code sends `EXECUTE name(args)` instead of the text (For): the arguments still
// go as literals in the simple protocol, so a Statement can stand in a multi-statement
// round trip like any other, and PostgreSQL reuses its plan: on the service's pools
// (store.Options.GenericPlans, plan_cache_mode = force_generic_plan) each connection plans
// each statement once; with PostgreSQL's default (auto) a statement over an array
// parameter is planned on every call, and parsed once.
//
// A pool behind a transaction pooler never prepares: its next transaction may run on
// another server connection (Dialect is then not this package's, and For returns the
// text). A connection whose PREPARE failed (the schema not yet migrated: the service
// migrates on its pool's first connection) tries again whenever the pool hands it out
// (one failed round trip each time, on a database that never gets the service's
// tables); until then a Statement run on it fails with "prepared statement does not
// exist", which only a database without the service's tables can see.
package pgprep

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/schema"
)

// Statement is one hot statement: its text with bun placeholders, and the name every
// preparing connection knows it by.
type Statement struct {
	name    string
	text    string
	exec    string
	prepare string
}

var (
	mu         sync.Mutex
	registered []*Statement
	byName     = map[string]bool{}
	validName  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// New registers a statement under name (lower case, unique: it is the prepared
// statement's name on every connection). text uses bun's positional placeholders (?),
// each of which becomes a parameter; give a parameter whose type PostgreSQL cannot infer
// from its place a cast (?::timestamptz). New panics on a bad or repeated name, or on a
// named placeholder (?name): both are programming errors, caught at init.
func New(name, text string) *Statement {
	if !validName.MatchString(name) {
		panic("pgprep: bad statement name " + strconv.Quote(name))
	}
	n, numbered := number(text)
	s := &Statement{name: name, text: text, prepare: "PREPARE " + name + " AS " + numbered}
	s.exec = "EXECUTE " + name
	if n > 0 {
		s.exec += "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
	}
	mu.Lock()
	defer mu.Unlock()
	if byName[name] {
		panic("pgprep: statement " + name + " registered twice")
	}
	byName[name] = true
	registered = append(registered, s)
	return s
}

// number turns bun's positional placeholders into $1, $2, ... outside quoted literals
// and identifiers, and returns how many there were.
func number(text string) (int, string) {
	var b strings.Builder
	n := 0
	var quote byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			if i+1 < len(text) && (text[i+1] == '_' || text[i+1] >= 'a' && text[i+1] <= 'z' || text[i+1] >= 'A' && text[i+1] <= 'Z') {
				panic("pgprep: named placeholder in " + strconv.Quote(text))
			}
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return n, b.String()
}

// Text is the statement with bun placeholders, as a pool that does not prepare sends it.
func (s *Statement) Text() string { return s.text }

// For is what to send on db (a pool, a connection or a transaction of one): EXECUTE with
// the statement's arguments when db's pool prepares, else the statement's text. Either
// way the arguments are bun's, in the same order.
func (s *Statement) For(db bun.IDB) string {
	if On(db) {
		return s.exec
	}
	return s.text
}

// dialect is PostgreSQL's, on a pool whose connections prepare the statements.
type dialect struct{ *pgdialect.Dialect }

// Dialect is the bun dialect of a pool that prepares (the store opens such a pool with
// it, and with AfterConnect and ResetSession on its connections).
func Dialect() schema.Dialect { return dialect{pgdialect.New()} }

// On reports whether db's pool prepares the statements.
func On(db bun.IDB) bool {
	_, ok := db.Dialect().(dialect)
	return ok
}

// preparedKey marks, in pgconn's CustomData, a connection that prepared every statement.
const preparedKey = "pgprep.prepared"

// AfterConnect prepares every registered statement on a new connection. A failure is
// not the connection's: ResetSession tries again later.
func AfterConnect(ctx context.Context, conn *pgx.Conn) error {
	prepareAll(ctx, conn)
	return nil
}

// ResetSession runs before the pool hands out a connection it had before: one whose
// PREPARE failed (its first use migrated the schema, say) tries again.
func ResetSession(ctx context.Context, conn *pgx.Conn) error {
	if !Prepared(conn) {
		prepareAll(ctx, conn)
	}
	return nil
}

// Prepared reports whether conn has prepared every registered statement.
func Prepared(conn *pgx.Conn) bool {
	ok, _ := conn.PgConn().CustomData()[preparedKey].(bool)
	return ok
}

// prepareAll prepares every statement in one round trip, all or none: PREPARE is not
// undone by a rollback, so what a failure part way left is deallocated (and For's
// EXECUTE of a statement that did not prepare fails loudly: no pool runs half prepared).
func prepareAll(ctx context.Context, conn *pgx.Conn) {
	mu.Lock()
	stmts := make([]string, 0, len(registered)+1)
	stmts = append(stmts, "DEALLOCATE ALL")
	for _, s := range registered {
		stmts = append(stmts, s.prepare)
	}
	mu.Unlock()
	_, err := conn.Exec(ctx, strings.Join(stmts, ";\n"))
	if err != nil {
		_, _ = conn.Exec(ctx, "DEALLOCATE ALL")
	}
	conn.PgConn().CustomData()[preparedKey] = err == nil
}

// Prepare prepares the registered statements on conn one by one and names the first
// that does not prepare (a test runs it against the migrations). It leaves conn as
// AfterConnect would: every statement prepared, or none.
func Prepare(ctx context.Context, conn *pgx.Conn) error {
	mu.Lock()
	stmts := append([]*Statement(nil), registered...)
	mu.Unlock()
	defer prepareAll(ctx, conn)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, "DEALLOCATE ALL; "+s.prepare); err != nil {
			return fmt.Errorf("prepare %s: %w", s.name, err)
		}
	}
	return nil
}

// Registered lists the registered statements' names.
func Registered() []string {
	mu.Lock()
	defer mu.Unlock()
	out := make([]string, len(registered))
	for i, s := range registered {
		out[i] = s.name
	}
	return out
}
