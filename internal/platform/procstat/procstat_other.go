//go:build !linux

package procstat

// Read: no /proc off Linux.
func Read(int) (Stat, error) { return Stat{}, ErrNoProc }

// CPU: no /proc off Linux.
func CPU(int, bool) (uint64, error) { return 0, ErrNoProc }

// RabbitBeam: no /proc off Linux.
func RabbitBeam() (int, error) { return 0, ErrNoProc }
