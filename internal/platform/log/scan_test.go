package log

import "testing"

func TestFindings(t *testing.T) {
	for line, want := range map[string]bool{
		`{"msg":"charge","token":"tok_visa"}`:                                    true,
		`{"msg":"pay","pm":"pm_card_visa"}`:                                      true,
		`{"card":"4242 4242 4242 4242"}`:                                         true,
		`{"card":"4000-0000-0000-0002"}`:                                         true,
		`{"auth":"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig"}`:        true,
		`{"secret":"whsec_0123456789abcdef"}`:                                    true,
		`{"key":"sk_test_4eC39HqLyjWDarjtT1zdp7dc"}`:                             true,
		`{"orderId":"01a212f4-53e9-7414-b9dc-b204fb7a7aef","latencyMs":12}`:      false,
		`{"time":"2026-11-25T13:43:33.427375703Z","msg":"request","status":200}`: false,
		`{"msg":"payment applied","payment":"succeeded","status":"PAID"}`:        false,
		`{"token":"[REDACTED]"}`:                                                 false,
	} {
		if got := len(Sensitive(line)) > 0; got != want {
			t.Errorf("%s: found %v, want %v (%v)", line, got, want, Sensitive(line))
		}
	}
}

func TestRedact_LeavesNothingSensitive(t *testing.T) {
	for _, s := range []string{
		"charge failed for token tok_visa on order 1",
		"payment method pm_card_chargeDeclined refused",
		"card 4242 4242 4242 4242 given as a token",
		"card 4000-0000-0000-0002",
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
		"signing secret whsec_0123456789abcdef0123",
		"stripe key sk_test_4eC39HqLyjWDarjtT1zdp7dc",
	} {
		if len(Sensitive(s)) == 0 {
			t.Errorf("the scanner misses %q", s)
		}
		if got := Redact(s); len(Sensitive(got)) > 0 {
			t.Errorf("Redact(%q) = %q still holds %v", s, got, Sensitive(got))
		}
	}
}
