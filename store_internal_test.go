package mpauthx

import (
	"strconv"
	"testing"
)

// TestPostgresSchemaLockSQL checks that the migration takes the advisory
// lock OpenPostgres takes.
func TestPostgresSchemaLockSQL(t *testing.T) {
	if got := strconv.FormatInt(postgresSchemaLock, 10); got != postgresSchemaLockSQL {
		t.Fatalf("postgresSchemaLockSQL = %s, want %s", postgresSchemaLockSQL, got)
	}
}
