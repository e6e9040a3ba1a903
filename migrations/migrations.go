// Package migrations embeds the SQL migrations, the only place the schema changes.
// Files are NNNN_name.up.sql / NNNN_name.down.sql, applied in name order.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
