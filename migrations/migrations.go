// Package migrations embeds the SQL migrations, the only place the schema changes.
// Files are NNNN_name.tx.up.sql / NNNN_name.tx.down.sql (bun's migrate naming: the
// number is the version, "tx" runs the file in one transaction), applied in order by
// store.Migrate and undone by store.Rollback.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
