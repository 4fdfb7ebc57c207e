//go:build !linux

package storage

import "errors"

// freeBytes is not implemented outside Linux: the disk reserve is not
// enforced there (OpenBadger logs it once).
func freeBytes(string) (int64, error) {
	return 0, errors.New("free disk space is only read on Linux")
}
