// Command logscan checks log files for what must never be logged: card-number-shaped
// digit runs (Luhn-valid), JWTs, payment provider tokens and secrets. make test runs it
// over the log of the whole test run; it exits 1 and shows the offending lines (masked)
// when it finds one.
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

var (
	cardLike = regexp.MustCompile(`\d(?:[ -]?\d){12,18}`)
	patterns = map[string]*regexp.Regexp{
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

// Findings lists what line holds that must not be logged.
func Findings(line string) []string {
	var out []string
	for name, re := range patterns {
		if re.MatchString(line) {
			out = append(out, name)
		}
	}
	for _, m := range cardLike.FindAllString(line, -1) {
		d := strings.NewReplacer(" ", "", "-", "").Replace(m)
		// UUIDs and timestamps are not cards: require a 13-19 digit run that passes Luhn
		// and does not sit inside a longer run of hex or digits.
		if len(d) >= 13 && len(d) <= 19 && Luhn(d) && !strings.Contains(line, m+"-") {
			out = append(out, "card number")
		}
	}
	return out
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: logscan FILE...")
		os.Exit(2)
	}
	lines, bad := 0, 0
	for _, name := range os.Args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "logscan:", err)
			os.Exit(2)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			lines++
			if found := Findings(sc.Text()); len(found) > 0 {
				bad++
				if bad <= 20 {
					fmt.Printf("logscan: %s: line %d holds %v: %.160s...\n", name, lines, found, mask(sc.Text()))
				}
			}
		}
		f.Close()
	}
	if bad > 0 {
		fmt.Printf("logscan: %d of %d log lines hold a secret, token or card number\n", bad, lines)
		os.Exit(1)
	}
	fmt.Printf("logscan: %d log lines of the test run, no secret, token or card number\n", lines)
}

func mask(s string) string {
	s = cardLike.ReplaceAllString(s, "[digits]")
	for _, re := range patterns {
		s = re.ReplaceAllString(s, "[masked]")
	}
	return s
}
