package datamove

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// syncFS flushes the whole filesystem holding path. One syncfs(2) after a copy of thousands
// of files costs one journal commit where an fsync per file costs thousands; since Linux 5.8
// it also reports writeback errors of files already closed.
func syncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, e := syscall.Syscall(sysSyncfs, f.Fd(), 0, 0); e != 0 {
		return fmt.Errorf("syncfs %s: %w", path, e)
	}
	return nil
}

// fsyncDir makes a rename or unlink in dir durable.
func fsyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// lutimes sets the times of path itself, not of what a symlink points to.
func lutimes(path string, atime, mtime syscall.Timespec) error {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	const atFDCWD = -100
	const atSymlinkNoFollow = 0x100
	ts := [2]syscall.Timespec{atime, mtime}
	fdcwd := atFDCWD
	_, _, e := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(fdcwd), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&ts[0])), atSymlinkNoFollow, 0, 0)
	if e != 0 {
		return &fs.PathError{Op: "utimensat", Path: path, Err: e}
	}
	return nil
}

// freeBytes is the space an unprivileged writer can still use on path's filesystem; the job
// runs as root, but counting root's reserve as free would let it fill the node's volume.
func freeBytes(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// blockSize is the allocation unit of path's filesystem.
func blockSize(path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil || st.Bsize <= 0 {
		return 4096
	}
	return int64(st.Bsize)
}

// exists reports whether path exists (without following a final symlink).
func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func isDir(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.IsDir()
}

func statT(fi fs.FileInfo) *syscall.Stat_t {
	return fi.Sys().(*syscall.Stat_t)
}

// writeFileDurably writes path via a temporary file and rename, so a reader sees the whole
// file or none, and the rename survives a crash.
func writeFileDurably(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return fsyncDir(filepath.Dir(path))
}
