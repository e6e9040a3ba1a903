// Package cardnum is the one detector of card numbers (PANs) in the service: checkout
// refuses a payment token shaped like one, the payment gateways refuse it again, the log
// redactor masks it and the log scanner of the test run reports it. Digits may be split by
// spaces, dashes, dots or underscores, as people and programs write them.
package cardnum

import (
	"regexp"
	"strings"
)

// run is 12 or more digits, each pair split by at most two separator characters.
var run = regexp.MustCompile(`\d(?:[ _.\-]{0,2}\d){11,}`)

var separators = strings.NewReplacer(" ", "", "_", "", ".", "", "-", "")

// Contains reports whether s holds a run of 12 or more digits: anything that could be a
// card number, checksum or not. Used where refusing too much is safe (input, redaction).
func Contains(s string) bool { return run.MatchString(s) }

// Is reports whether the whole of s is 12 to 19 digits, possibly split by separators.
func Is(s string) bool {
	m := run.FindString(s)
	if m != s {
		return false
	}
	n := len(separators.Replace(m))
	return n >= 12 && n <= 19
}

// uuid is a UUID: its digit groups are ids, never card numbers.
var uuid = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// Redact replaces every run Contains finds with mask, except digits inside a UUID (a
// correlation or event id).
func Redact(s, mask string) string {
	locs := run.FindAllStringIndex(s, -1)
	if len(locs) == 0 {
		return s
	}
	ids := uuid.FindAllStringIndex(s, -1)
	var b strings.Builder
	last := 0
	for _, loc := range locs {
		if within(ids, loc) {
			continue
		}
		b.WriteString(s[last:loc[0]])
		b.WriteString(mask)
		last = loc[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// Find returns the runs of s that are card numbers for certain: 13 to 19 digits passing
// the Luhn checksum. A run followed by '-' and more is part of a longer id (a UUID), not
// a card. Used to report leaks without false alarms.
func Find(s string) []string {
	var out []string
	ids := uuid.FindAllStringIndex(s, -1)
	for _, loc := range run.FindAllStringIndex(s, -1) {
		m := s[loc[0]:loc[1]]
		d := separators.Replace(m)
		if loc[1] < len(s) && s[loc[1]] == '-' || within(ids, loc) {
			continue
		}
		if len(d) >= 13 && len(d) <= 19 && Luhn(d) {
			out = append(out, m)
		}
	}
	return out
}

// Luhn reports whether digits pass the card number checksum.
func Luhn(digits string) bool {
	sum, alt := 0, false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if d < 0 || d > 9 {
			return false
		}
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

// within reports whether the span loc lies inside one of spans.
func within(spans [][]int, loc []int) bool {
	for _, sp := range spans {
		if loc[0] >= sp[0] && loc[1] <= sp[1] {
			return true
		}
	}
	return false
}
