// Package procstat reads a process's CPU time from Linux's /proc accounting, for the
// bench's and the benchmarks' figures per order. Off Linux every read fails with
// ErrNoProc.
package procstat

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat: 100 on every Linux
// architecture the kernel builds for.
const ClockTicks = 100

// ErrNoProc is the error of every read off Linux.
var ErrNoProc = errors.New("no /proc accounting off Linux")

// Stat is what is used of /proc/<pid>/stat.
type Stat struct {
	Comm                         string
	PPID                         int
	Utime, Stime, Cutime, Cstime uint64 // clock ticks
}

// Parse reads a /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself: the fields after it start after its last ')'.
func Parse(b []byte) (Stat, error) {
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return Stat{}, errors.New("malformed /proc stat: no (comm)")
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("malformed /proc stat: %d fields after comm", len(f))
	}
	st := Stat{Comm: s[open+1 : end]}
	var err error
	if st.PPID, err = strconv.Atoi(f[1]); err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat ppid: %w", err)
	}
	for i, p := range []*uint64{&st.Utime, &st.Stime, &st.Cutime, &st.Cstime} {
		if *p, err = strconv.ParseUint(f[11+i], 10, 64); err != nil {
			return Stat{}, fmt.Errorf("malformed /proc stat time: %w", err)
		}
	}
	return st, nil
}

// Total is the process's CPU with that of the children it waited for, in clock ticks.
func (p Stat) Total() uint64 { return p.Utime + p.Stime + p.Cutime + p.Cstime }
