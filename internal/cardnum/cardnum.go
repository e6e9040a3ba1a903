// Package cardnum is the one detector of card numbers (PANs) in the service: checkout
// refuses a payment token shaped like one, the payment gateways refuse it again, the log
// redactor masks it and the log scanner of the test run reports it. Digits may be split by
// spaces, dashes, dots or underscores, as people and programs write them, in runs of any
// reasonable length (up to MaxGap); in a payment token, letters split them too.
package cardnum

import (
	"regexp"
	"slices"
	"strings"
)

// run is 12 or more digits, each pair split by at most two separator characters.
var run = regexp.MustCompile(`\d(?:[ _.\-]{0,2}\d){11,}`)

var separators = strings.NewReplacer(" ", "", "_", "", ".", "", "-", "")

// MaxGap is the longest run of separators (or, in a token, of any non-digits) between two
// digits of one card number. Two was the old bound, and "4242___4242___4242___4242" went
// through; a longer bound would join unrelated numbers of a sentence.
const MaxGap = 4

// Contains reports whether s holds a run of 12 or more digits (anything that could be a
// card number, checksum or not), or 13 to 19 digits passing the Luhn checksum split by
// runs of up to MaxGap spaces, dashes, dots or underscores. Used where refusing too much
// is safe (input, redaction).
func Contains(s string) bool { return run.MatchString(s) || len(spread(s, isSeparator, false, 19)) > 0 }

// InToken reports whether a payment token hides a card number: what Contains finds, or
// 13 to 19 digits passing the Luhn checksum split by runs of up to MaxGap of any
// characters, letters included ("4242abc4242abc4242abc4242"). A provider's token
// (tok_visa, pm_card_visa, pm_1NqZ8sLkdIwHu7ixVcS2oX3a) has far fewer digits, so it is
// never one. Not for free text: hexadecimal ids would match.
func InToken(s string) bool {
	return Contains(s) || len(spread(s, isNotDigit, true, maxTokenGroups)) > 0
}

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
	if digits(s) < 12 || isUUID(s) {
		// What Contains finds has 12 digits or more, and a UUID's are an id's: most log
		// values are one or the other, and the patterns below cost microseconds each.
		return s
	}
	return redactAll(s, mask)
}

// redactAll is Redact without its shortcuts.
func redactAll(s, mask string) string {
	locs := merge(append(run.FindAllStringIndex(s, -1), spread(s, isSeparator, false, 19)...))
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
	for _, loc := range spread(s, isSeparator, false, 19) {
		if !within(ids, loc) && !slices.Contains(out, s[loc[0]:loc[1]]) {
			out = append(out, s[loc[0]:loc[1]])
		}
	}
	return out
}

// maxTokenGroups bounds the groups of a card split by letters in a token: card numbers
// are written in at most five groups (4-4-4-4-3), and allowing more would find 13 digits
// in the scattered digits of a provider's random id (pm_1NqZ8sLkdIwHu7ixVcS2oX3a).
const maxTokenGroups = 6

func isSeparator(c byte) bool { return c == ' ' || c == '_' || c == '.' || c == '-' }

func isNotDigit(c byte) bool { return c < '0' || c > '9' }

// spread returns the spans of s (from a card's first digit to its last) where 13 to 19
// digits pass the Luhn checksum, each pair of them split by at most MaxGap characters for
// which sep is true, in at most maxGroups groups. With glued, any window of a chain's
// digits is tried, so digits glued before or after a card do not hide it (refusing too
// much is safe in a token); without it a card starts and ends between groups, as people
// write one, so that a 16-digit run failing the checksum is not reported for the 15
// digits inside it that pass.
func spread(s string, sep func(byte) bool, glued bool, maxGroups int) [][]int {
	var out [][]int
	var pos, group []int // indices of the current chain's digits, and the group of each
	check := func() {
		if len(pos) < 13 {
			return
		}
		digits := make([]byte, len(pos))
		for i, p := range pos {
			digits[i] = s[p]
		}
		for i := range pos {
			if !glued && i > 0 && group[i] == group[i-1] {
				continue
			}
			for j := i + 13; j <= len(pos) && j-i <= 19 && group[j-1]-group[i] < maxGroups; j++ {
				if (glued || j == len(pos) || group[j] != group[j-1]) && Luhn(string(digits[i:j])) {
					out = append(out, []int{pos[i], pos[j-1] + 1})
				}
			}
		}
	}
	gap := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if gap > MaxGap {
				check()
				pos, group = pos[:0], group[:0]
			}
			g := 0
			if len(group) > 0 {
				g = group[len(group)-1]
				if gap > 0 {
					g++
				}
			}
			pos, group, gap = append(pos, i), append(group, g), 0
		case sep(c):
			if len(pos) > 0 {
				gap++
			}
		default:
			gap = MaxGap + 1
		}
	}
	check()
	return merge(out)
}

// merge sorts spans and joins those that overlap.
func merge(spans [][]int) [][]int {
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b []int) int { return a[0] - b[0] })
	out := spans[:1]
	for _, sp := range spans[1:] {
		if last := out[len(out)-1]; sp[0] <= last[1] {
			last[1] = max(last[1], sp[1])
		} else {
			out = append(out, sp)
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

// digits counts the decimal digits of s.
func digits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n
}

// isUUID reports whether the whole of s is a UUID: the uuid pattern is 36 characters long.
func isUUID(s string) bool { return len(s) == 36 && uuid.MatchString(s) }
