// Command logscan checks log files for what must never be logged: card-number-shaped
// digit runs (Luhn-valid), JWTs, payment provider tokens and secrets. make test runs it
// over the log of the whole test run; it exits 1 and shows the offending lines (masked)
// when it finds one.
package main

import (
	"bufio"
	"fmt"
	"os"

	clog "github.com/checkout-backend/checkout/internal/platform/log"
)

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
			if found := clog.Sensitive(sc.Text()); len(found) > 0 {
				bad++
				if bad <= 20 {
					fmt.Printf("logscan: %s: line %d holds %v: %.160s...\n", name, lines, found, clog.Mask(sc.Text()))
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
