package datamove

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// treeCopy says how copyTrees treats one set of directories.
type treeCopy struct {
	// dstRoot is where the trees go; empty means only hash them (a snapshot's manifest).
	dstRoot string
	// hash computes the SHA-256 of every regular file, on the buffer the copy already holds.
	hash bool
	// expect, when set, is the manifest every regular file must match: a file missing from
	// it, a file of it missing, or a different digest fails the copy naming the file.
	expect manifest
	// owner, when set, is given to everything copied instead of the source's owner.
	owner *owner
	// linkSST hard-links RocksDB table files (*.sst) instead of copying them: RocksDB never
	// modifies one once written, so the link is as good as a copy and costs no space.
	linkSST bool
}

type owner struct{ uid, gid int }

// treeStats is what copyTrees found: every regular file's digest (when hashing) and totals.
// A file with several hard links counts once in Bytes and once per name in Files.
type treeStats struct {
	Bytes   int64
	Files   int64
	Digests manifest
}

// copyBufferSize is large enough that read and write syscalls cost little next to the
// copying itself, small enough that many files in flight need little memory.
const copyBufferSize = 1 << 20

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// copyWorkers is how many regular files are copied at once: enough to keep a disk's queue
// full and every core hashing while one file waits on I/O.
func copyWorkers() int {
	return min(max(4, 4*runtime.GOMAXPROCS(0)), 16)
}

type fileJob struct {
	rel, src, dst string
	st            *syscall.Stat_t
}

type hardLink struct{ dst, target, rel string }

type dirMeta struct {
	dst string
	st  *syscall.Stat_t
}

// copyTrees copies srcRoot/<name> to tc.dstRoot/<name> for each name that exists, keeping
// owner, mode, times, symlinks (as links), hard links and empty directories, and hashing on
// the way. The walk runs in this goroutine; regular files are copied by a pool of workers, so
// many small files and several large ones move at once. Nothing is synced: the caller syncs
// the destination filesystem once.
func copyTrees(ctx context.Context, srcRoot string, names []string, tc treeCopy) (treeStats, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		mu    sync.Mutex
		stats = treeStats{Digests: manifest{}}
		jobs  = make(chan fileJob, 64)
		wg    sync.WaitGroup
	)
	record := func(rel string, d *digest, size int64, newInode bool) {
		mu.Lock()
		defer mu.Unlock()
		stats.Files++
		if newInode {
			stats.Bytes += size
		}
		if d != nil {
			stats.Digests[rel] = *d
		}
	}
	for range copyWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				d, err := copyFile(j, tc)
				if err != nil {
					cancel(err)
					continue
				}
				record(j.rel, d, j.st.Size, true)
				testPoint("file copied")
			}
		}()
	}

	var (
		dirs      []dirMeta
		links     []hardLink
		firstName = map[[2]uint64]string{} // (dev, ino) of a multiply-linked file → its first rel path
	)
	walkErr := func() error {
		defer close(jobs)
		for _, name := range names {
			top := filepath.Join(srcRoot, name)
			if ok, err := exists(top); err != nil {
				return err
			} else if !ok {
				continue
			}
			err := filepath.WalkDir(top, func(src string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if err := context.Cause(ctx); err != nil {
					return err
				}
				rel, _ := filepath.Rel(srcRoot, src)
				fi, err := d.Info()
				if err != nil {
					return err
				}
				st := statT(fi)
				dst := ""
				if tc.dstRoot != "" {
					dst = filepath.Join(tc.dstRoot, rel)
				}
				switch mode := fi.Mode(); {
				case mode.IsDir():
					if dst != "" {
						if err := os.Mkdir(dst, 0o700); err != nil {
							return err
						}
						dirs = append(dirs, dirMeta{dst, st})
					}
				case mode&fs.ModeSymlink != 0:
					if dst != "" {
						if err := copySymlink(src, dst, st, tc.owner); err != nil {
							return err
						}
					}
				case mode.IsRegular():
					if tc.expect != nil {
						if _, ok := tc.expect[rel]; !ok {
							return fmt.Errorf("%s is not in the manifest", rel)
						}
					}
					if st.Nlink > 1 {
						key := [2]uint64{st.Dev, st.Ino}
						if first, ok := firstName[key]; ok {
							links = append(links, hardLink{dst: dst, target: first, rel: rel})
							return nil
						}
						firstName[key] = rel
					}
					if tc.linkSST && strings.HasSuffix(rel, ".sst") {
						if err := os.Link(src, dst); err != nil {
							return err
						}
						record(rel, nil, st.Size, false)
						return nil
					}
					select {
					case jobs <- fileJob{rel: rel, src: src, dst: dst, st: st}:
					case <-ctx.Done():
						return context.Cause(ctx)
					}
				default:
					return fmt.Errorf("%s: cannot copy a %s", rel, mode.Type())
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}()
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return stats, err
	}
	if walkErr != nil {
		return stats, walkErr
	}

	// Second and later names of a hard-linked file: link them to the first copy, which the
	// workers have finished by now.
	for _, l := range links {
		d, hashed := stats.Digests[l.target]
		if tc.dstRoot != "" {
			if err := os.Link(filepath.Join(tc.dstRoot, l.target), l.dst); err != nil {
				return stats, err
			}
		}
		if tc.expect != nil && hashed && tc.expect[l.rel] != d {
			return stats, corruptError(l.rel, d, tc.expect[l.rel])
		}
		if hashed {
			record(l.rel, &d, 0, false)
		} else {
			record(l.rel, nil, 0, false)
		}
	}
	if tc.expect != nil {
		var missing []string
		for rel := range tc.expect {
			if _, ok := stats.Digests[rel]; !ok {
				missing = append(missing, rel)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return stats, fmt.Errorf("%s is listed in the manifest but missing (%d missing)", missing[0], len(missing))
		}
	}
	// Directories last and deepest first: creating entries in a directory moves its mtime,
	// and a read-only directory mode would stop the copy into it.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := applyMeta(dirs[i].dst, dirs[i].st, tc.owner, false); err != nil {
			return stats, err
		}
	}
	return stats, nil
}

func corruptError(rel string, got, want digest) error {
	return fmt.Errorf("%s is corrupted: its sha256 is %x, the manifest says %x", rel, got, want)
}

// copyFile copies (or only hashes, when j.dst is empty) one regular file, verifying it when
// tc.expect is set.
func copyFile(j fileJob, tc treeCopy) (*digest, error) {
	src, err := os.OpenFile(j.src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var (
		dst *os.File
		h   hash.Hash
	)
	if j.dst != "" {
		dst, err = os.OpenFile(j.dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		defer dst.Close()
	}
	if tc.hash || tc.expect != nil {
		h = sha256.New()
	}
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	buf := *bufp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if h != nil {
				h.Write(buf[:n])
			}
			if dst != nil {
				if _, err := dst.Write(buf[:n]); err != nil {
					return nil, fmt.Errorf("writing %s: %w", j.dst, err)
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("reading %s: %w", j.src, rerr)
		}
	}
	var d *digest
	if h != nil {
		d = new(digest)
		h.Sum(d[:0])
		if tc.expect != nil && tc.expect[j.rel] != *d {
			return nil, corruptError(j.rel, *d, tc.expect[j.rel])
		}
	}
	if dst != nil {
		if err := dst.Close(); err != nil {
			return nil, fmt.Errorf("writing %s: %w", j.dst, err)
		}
		if err := applyMeta(j.dst, j.st, tc.owner, false); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func copySymlink(src, dst string, st *syscall.Stat_t, o *owner) error {
	target, err := os.Readlink(src)
	if err != nil {
		return err
	}
	if err := os.Symlink(target, dst); err != nil {
		return err
	}
	return applyMeta(dst, st, o, true)
}

// applyMeta gives dst the owner, mode and times of st. Owner before mode: chown clears the
// set-user-ID and set-group-ID bits.
func applyMeta(dst string, st *syscall.Stat_t, o *owner, symlink bool) error {
	uid, gid := int(st.Uid), int(st.Gid)
	if o != nil {
		uid, gid = o.uid, o.gid
	}
	if err := os.Lchown(dst, uid, gid); err != nil {
		return err
	}
	if !symlink {
		if err := syscall.Chmod(dst, st.Mode&0o7777); err != nil {
			return &fs.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	return lutimes(dst, st.Atim, st.Mtim)
}

// treeSize estimates the space a copy of srcRoot/<names> takes: file sizes rounded up to the
// filesystem's block, one block per directory and symlink, each hard-linked file once.
func treeSize(srcRoot string, names []string, block int64) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	for _, name := range names {
		top := filepath.Join(srcRoot, name)
		if ok, err := exists(top); err != nil || !ok {
			if err != nil {
				return 0, err
			}
			continue
		}
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				total += block
				return nil
			}
			st := statT(fi)
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if seen[key] {
					return nil
				}
				seen[key] = true
			}
			total += (fi.Size() + block - 1) / block * block
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}
