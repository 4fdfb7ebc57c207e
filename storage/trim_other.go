//go:build !linux

package storage

// trimResident is a no-op outside Linux (see trim_linux.go).
func trimResident(string) int64 { return 0 }
