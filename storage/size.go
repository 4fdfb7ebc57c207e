//go:build unix

package storage

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Size reports the disk space the badger store takes, in bytes: lsm for
// the LSM tree (*.sst tables, the write-ahead *.mem files and the
// manifest) and vlog for the value log (*.vlog). It counts allocated
// blocks, not apparent file lengths: badger preallocates value-log and
// memtable files as sparse files of up to 2 GiB, which would otherwise
// report a fresh store as gigabytes large. The broker exports it as a
// metric; an unreadable directory reports what could be read.
func (b *Badger) Size() (lsm, vlog int64) {
	entries, err := os.ReadDir(b.opts.Dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		fi, err := os.Stat(filepath.Join(b.opts.Dir, e.Name()))
		if err != nil {
			continue // deleted by a compaction meanwhile
		}
		n := fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n = min(n, int64(st.Blocks)*512)
		}
		switch name := e.Name(); {
		case strings.HasSuffix(name, ".vlog"):
			vlog += n
		case strings.HasSuffix(name, ".sst"), strings.HasSuffix(name, ".mem"), strings.HasPrefix(name, "MANIFEST"):
			lsm += n
		}
	}
	return lsm, vlog
}
