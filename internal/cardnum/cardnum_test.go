package cardnum

import "testing"

func TestContains(t *testing.T) {
	for _, s := range []string{
		"4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "4242_4242_4242_4242",
		"4242.4242.4242.4242", "tok_4242424242424242", "card 4000 0566 5566 5556 here", "123456789012",
	} {
		if !Contains(s) {
			t.Errorf("Contains(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"tok_visa", "pm_card_visa", "12345678901", "2026-11-27T12:00:00Z", "order-42"} {
		if Contains(s) {
			t.Errorf("Contains(%q) = true, want false", s)
		}
	}
}

func TestIs(t *testing.T) {
	for s, want := range map[string]bool{
		"4242424242424242": true, "4242 4242 4242 4242": true, "4242_4242_4242_4242": true,
		"tok_4242424242424242": false, "42424242424242424242": false, "424242424242": true, "": false,
	} {
		if got := Is(s); got != want {
			t.Errorf("Is(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestFind_LuhnAndUUIDs(t *testing.T) {
	if got := Find("paid with 4242_4242_4242_4242 today"); len(got) != 1 {
		t.Fatalf("Find underscored card: %v", got)
	}
	if got := Find("4242424242424241"); len(got) != 0 {
		t.Fatalf("a run failing Luhn is not reported: %v", got)
	}
	if got := Find("id 01234567-8901-2345-6789-012345678903"); len(got) != 0 {
		t.Fatalf("a UUID-like run is not a card: %v", got)
	}
}

func TestRedact(t *testing.T) {
	if got := Redact("x 4242_4242_4242_4242 y", "[R]"); got != "x [R] y" {
		t.Fatalf("Redact: %q", got)
	}
}

func TestRedact_KeepsUUIDs(t *testing.T) {
	id := "01a21cf2-5d91-7ddb-b527-812345678901"
	if got := Redact("correlationId "+id+" card 4242424242424242", "[R]"); got != "correlationId "+id+" card [R]" {
		t.Fatalf("Redact: %q", got)
	}
	if got := Redact("x-123456789012", "[R]"); got != "x-[R]" {
		t.Fatalf("a dash before 12 digits is not a UUID: %q", got)
	}
}
