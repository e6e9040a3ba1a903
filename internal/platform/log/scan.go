package log

import (
	"regexp"
	"strings"
)

var (
	cardRun   = regexp.MustCompile(`\d(?:[ -]?\d){12,18}`)
	sensitive = map[string]*regexp.Regexp{
		"JWT":                    regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.`),
		"payment token":          regexp.MustCompile(`\b(?:tok|pm|src|card)_[A-Za-z0-9]{3,}`),
		"webhook signing secret": regexp.MustCompile(`whsec_[A-Za-z0-9]{8,}`),
		"API secret key":         regexp.MustCompile(`\b[sr]k_(?:test|live)_[A-Za-z0-9]{3,}`),
		"client secret":          regexp.MustCompile(`pi_[A-Za-z0-9]+_secret_[A-Za-z0-9]+`),
	}
)

// Luhn reports whether digits pass the card number checksum.
func Luhn(digits string) bool {
	sum, alt := 0, false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if alt {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		alt = !alt
	}
	return sum%10 == 0
}

// Sensitive names what a log line holds that must never be logged: a card number
// (13-19 digits passing Luhn), a JWT, a payment token, a signing or API secret.
func Sensitive(line string) []string {
	var out []string
	for name, re := range sensitive {
		if re.MatchString(line) {
			out = append(out, name)
		}
	}
	for _, m := range cardRun.FindAllString(line, -1) {
		d := strings.NewReplacer(" ", "", "-", "").Replace(m)
		// UUIDs are not cards: a run followed by '-' is part of a longer id.
		if len(d) >= 13 && len(d) <= 19 && Luhn(d) && !strings.Contains(line, m+"-") {
			out = append(out, "card number")
		}
	}
	return out
}

// Mask hides what Sensitive finds, to show an offending line safely.
func Mask(s string) string {
	s = cardRun.ReplaceAllString(s, "[digits]")
	for _, re := range sensitive {
		s = re.ReplaceAllString(s, "[masked]")
	}
	return s
}
