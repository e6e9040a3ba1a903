package log

import (
	"regexp"

	"github.com/checkout-backend/checkout/internal/cardnum"
)

var (
	sensitive = map[string]*regexp.Regexp{
		"JWT":                    regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.`),
		"payment token":          regexp.MustCompile(`\b(?:tok|pm|src|card)_[A-Za-z0-9]{3,}`),
		"webhook signing secret": regexp.MustCompile(`whsec_[A-Za-z0-9]{8,}`),
		"API secret key":         regexp.MustCompile(`\b[sr]k_(?:test|live)_[A-Za-z0-9]{3,}`),
		"client secret":          regexp.MustCompile(`pi_[A-Za-z0-9]+_secret_[A-Za-z0-9]+`),
	}
)

// Sensitive names what a log line holds that must never be logged: a card number
// (13-19 digits passing Luhn), a JWT, a payment token, a signing or API secret.
func Sensitive(line string) []string {
	var out []string
	for name, re := range sensitive {
		if re.MatchString(line) {
			out = append(out, name)
		}
	}
	if len(cardnum.Find(line)) > 0 {
		out = append(out, "card number")
	}
	return out
}

// Mask hides what Sensitive finds, to show an offending line safely.
func Mask(s string) string {
	s = cardnum.Redact(s, "[digits]")
	for _, re := range sensitive {
		s = re.ReplaceAllString(s, "[masked]")
	}
	return s
}
