//go:build !linux

package storage

// trimResident is a no-op outside Linux (see trim_linux.go).
func trimResident(string) int64 { return 0 }

// residentFileBytes is 0 outside Linux.
func residentFileBytes() int64 { return 0 }
