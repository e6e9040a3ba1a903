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

// TestL11_CardNumberSplitByLongSeparatorsOrLetters: a card number split by three or more
// separator characters, or by letters, is still a card number to the token check, and
// real provider tokens are not.
func TestL11_CardNumberSplitByLongSeparatorsOrLetters(t *testing.T) {
	cards := []string{
		"4242___4242___4242___4242",       // the reviewer's
		"4242____4242____4242____4242",    // four
		"4242abc4242def4242ghi4242",       // letters
		"4242x4242y4242z4242",             // one letter each
		"tok_4242_x_4242_y__4242___4242",  // mixed
		"4242 - 4242 - 4242 - 4242",       // spaced dashes
		"4_2_4_2_4_2_4_2_4_2_4_2_4_2_4_2", // a separator between every digit
		"pm_card_4000a0566b5566c5556",     // another card number behind a prefix
		"378282246310005",                 // Amex, 15 digits, plain
		"3782_8224_6310_005",
		"3782zz822463zz10005",
	}
	for _, s := range cards {
		if !InToken(s) {
			t.Errorf("InToken(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"4242___4242___4242___4242", "4242 - 4242 - 4242 - 4242", "4_2_4_2_4_2_4_2_4_2_4_2_4_2_4_2"} {
		if !Contains(s) {
			t.Errorf("Contains(%q) = false, want true (punctuation only)", s)
		}
	}
	tokens := []string{
		"tok_visa", "pm_card_visa", "tok_visa_4242", "tok_chargeDeclined", "pm_card_threeDSecure2Required",
		"pm_1NqZ8sLkdIwHu7ixVcS2oX3a", "pm_1OtherKindOfID", "tok_1MqFz2LkdIwHu7ixQyZ9Xb4c",
		"pm_1P3w5v2eZvKYlo2C9m8Yx7Qa", "src_1N3T4b2eZvKYlo2CJ7x1Ugq5", "tok_1234abcd5678efgh", "card_1NxP0q2eZvKYlo2C0Q9VnU7d",
	}
	for _, s := range tokens {
		if InToken(s) {
			t.Errorf("InToken(%q) = true, want false (a provider token)", s)
		}
	}
}

// Redact's shortcuts (fewer than 12 digits, a whole UUID) skip only what the patterns
// would leave as it is.
func TestRedact_ShortcutsSkipOnlyWhatThePatternsLeave(t *testing.T) {
	for s, card := range map[string]bool{
		"01a21cf2-5d91-7ddb-b527-812345678901":  false, // a UUID: skipped
		"01a21cf2-5d91-7ddb-b527-8123456789012": true,  // one digit longer: not a UUID
		"4242424242424242-5d91-7ddb-b527-81234": true,  // a UUID's shape, not its digits
		"4242 424-2424-2424-2424-2zzzzzzzzzzz":  true,  // a UUID's length and dashes, not its hex
		"123456789012":                          true,  // 12 digits: not skipped
		"1234 5678 9012":                        true,
		"12345678901":                           false, // 11: skipped
		"PAID":                                  false,
	} {
		got, want := Redact(s, "[R]"), redactAll(s, "[R]")
		if got != want {
			t.Errorf("Redact(%q) = %q, want %q (without the shortcuts)", s, got, want)
		}
		if (got != s) != card {
			t.Errorf("Redact(%q) = %q: masked %v, want %v", s, got, got != s, card)
		}
	}
}
