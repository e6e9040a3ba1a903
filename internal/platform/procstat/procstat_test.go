package procstat_test

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/procstat"
)

func TestParseProcStat(t *testing.T) {
	// A command name with a space and parentheses; utime 1500, stime 250, cutime 40,
	// cstime 10 (fields 14-17), ppid 2223.
	line := "2979 (beam (smp) x) S 2223 2979 2979 0 -1 4194560 123 0 0 0 1500 250 40 10 20 0 29 0 548989 3133440 389 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := procstat.Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "beam (smp) x" || st.PPID != 2223 || st.Utime != 1500 || st.Stime != 250 || st.Cutime != 40 || st.Cstime != 10 || st.Total() != 1800 {
		t.Fatalf("parseProcStat = %+v", st)
	}
	for _, bad := range []string{"", "12 no-parens S 1", "12 (x) S 1 2 3", "12 (x) S notanumber 1 1 0 -1 0 0 0 0 0 1 2 3 4 20"} {
		if _, err := procstat.Parse([]byte(bad)); err == nil {
			t.Errorf("procstat.Parse(%q): no error", bad)
		}
	}
}

func TestProcessCPUOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc accounting is Linux only")
	}
	st, err := procstat.Read(os.Getpid())
	if err != nil || st.PPID != os.Getppid() {
		t.Fatalf("procstat.Read(self) = %+v, %v", st, err)
	}
	// Burn CPU until the kernel has counted some (it counts in ticks of 10 ms: on a busy
	// machine 30 ms of wall time may hold less than one tick of this process's CPU), for
	// at most 5 s.
	var ticks uint64
	for end := time.Now().Add(5 * time.Second); ticks == 0 && time.Now().Before(end); {
		for spin := time.Now().Add(10 * time.Millisecond); time.Now().Before(spin); {
		}
		if ticks, err = procstat.CPU(os.Getpid(), true); err != nil {
			t.Fatalf("procstat.CPU(self): %v", err)
		}
	}
	if ticks == 0 {
		t.Fatal("procstat.CPU(self) = 0 after 5 s of spinning")
	}
}
