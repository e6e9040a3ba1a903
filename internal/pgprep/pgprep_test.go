package pgprep

import (
	"strings"
	"testing"
)

func TestNumber_PlaceholdersBecomeParameters_QuotedOnesStay(t *testing.T) {
	n, got := number(`SELECT '?' AS q, "a?b", x FROM t WHERE a = ?::int AND b = ANY(?::text[]) AND c = 'it''s ?' AND d = ?`)
	want := `SELECT '?' AS q, "a?b", x FROM t WHERE a = $1::int AND b = ANY($2::text[]) AND c = 'it''s ?' AND d = $3`
	if n != 3 || got != want {
		t.Fatalf("number = %d, %s\nwant 3, %s", n, got, want)
	}
}

func TestNew_ExecutesWithTheSameArguments(t *testing.T) {
	s := New("test_exec_args", "UPDATE t SET a = ? WHERE id = ANY(?::uuid[])")
	if s.exec != "EXECUTE test_exec_args(?, ?)" {
		t.Fatalf("exec = %q", s.exec)
	}
	if s.prepare != "PREPARE test_exec_args AS UPDATE t SET a = $1 WHERE id = ANY($2::uuid[])" {
		t.Fatalf("prepare = %q", s.prepare)
	}
	if none := New("test_exec_none", "SELECT 1"); none.exec != "EXECUTE test_exec_none" {
		t.Fatalf("exec without arguments = %q", none.exec)
	}
}

func TestNew_RefusesWhatCannotBePrepared(t *testing.T) {
	for name, f := range map[string]func(){
		"a named placeholder": func() { New("test_named", "SELECT ?TableName") },
		"a repeated name":     func() { New("test_twice", "SELECT 1"); New("test_twice", "SELECT 2") },
		"a bad name":          func() { New("Bad-Name", "SELECT 1") },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(r.(string), "pgprep: ") {
					t.Fatalf("recovered %v, want a pgprep panic", r)
				}
			}()
			f()
		})
	}
}
