package storage

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// madvPageout is Linux's MADV_PAGEOUT (5.4+): reclaim the pages of a range
// now. Unlike MADV_DONTNEED it never discards data (file pages are written
// back if dirty and re-read on the next access; anonymous pages would be
// swapped), so advising a range that was unmapped and reused meanwhile is
// harmless.
const madvPageout = 21

// trimResident drops from the process's resident set the pages of badger's
// memory-mapped table files (*.sst) and value-log files (*.vlog, written
// through a shared mapping: MADV_PAGEOUT writes dirty pages back before it
// reclaims them) in the data dir. Badger reads its LSM
// tables through shared, read-only mappings, and every page a compaction or
// an iterator touched stays resident, and counted in the broker's RSS,
// until the kernel needs the memory: with a large backlog that is tens of
// MiB of clean page cache charged to the broker. Trimming them keeps the
// RSS to what the broker really holds; a page read again costs a page-cache
// lookup or a disk read, and the block cache keeps the hot blocks. It
// returns the bytes of mappings advised, or 0 where it cannot read
// /proc/self/maps.
func trimResident(dir string) int64 {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	var total int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// start-end perms offset dev inode path
		line := sc.Bytes()
		if !bytes.HasSuffix(line, []byte(".sst")) && !bytes.HasSuffix(line, []byte(".vlog")) {
			continue
		}
		fields := strings.Fields(string(line))
		if len(fields) < 6 || len(fields[1]) < 4 || fields[1][3] != 's' || filepath.Dir(fields[5]) != dir {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), madvPageout); errno == 0 {
			total += int64(end - start)
		}
	}
	return total
}

// residentFileBytes returns the process's resident file-backed (shared)
// memory from /proc/self/statm, or 0 if it cannot be read.
func residentFileBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0
	}
	return n * int64(os.Getpagesize())
}
