// Command benchdata measures the job's data work against the plain tools on a generated
// chain-like tree (64 MiB SST-like files plus thousands of small files), with a warm and a
// cold page cache, and prints throughput and the ratios the project targets (issue 9):
//
//	backup  ≥ 0.8 × the throughput of `cp -a --reflink=never` + sync (a copy that proves nothing)
//	backup  ≥ 1.5 × faster than cp -a + sync + hashing every file (the two-pass way to the same proof)
//	restore ≤ 1.3 × the time of cp -a + sync
//
// Run as root for the cold-cache figures (it drops the page cache). Usage:
//
//	go run ./test/benchdata -dir /var/tmp/cita-bench-data [-size 2GiB] [-runs 3]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/datamove"
)

func main() {
	dir := flag.String("dir", "/var/tmp/cita-bench-data", "work directory; its filesystem is the one measured")
	sizeFlag := flag.String("size", "2GiB", "approximate size of the generated tree")
	smallFiles := flag.Int("small-files", 8000, "number of small files (1-24 KiB) beside the SSTs")
	runs := flag.Int("runs", 3, "runs per measurement; the median is reported")
	keep := flag.Bool("keep", false, "keep the generated tree for the next run")
	flag.Parse()
	size, err := parseSize(*sizeFlag)
	if err != nil {
		fatal(err)
	}
	b := &bench{dir: *dir, runs: *runs}
	if err := b.run(size, *smallFiles); err != nil {
		fatal(err)
	}
	if !*keep {
		os.RemoveAll(*dir)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchdata:", err)
	os.Exit(1)
}

type bench struct {
	dir   string
	runs  int
	bytes int64
	fs    string
}

type measurement struct {
	name    string
	cache   string
	seconds float64
}

func (b *bench) node() string   { return filepath.Join(b.dir, "node") }
func (b *bench) backup() string { return filepath.Join(b.dir, "backup") }
func (b *bench) target() string { return filepath.Join(b.dir, "target") }

func (b *bench) run(size int64, smallFiles int) error {
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	b.fs = filesystemOf(b.dir)
	if !isDir(filepath.Join(b.node(), "chain_data")) {
		fmt.Printf("generating a %s chain-like tree in %s ...\n", human(size), b.node())
		if err := generate(b.node(), size, smallFiles); err != nil {
			return err
		}
	}
	n, files, err := treeBytes(b.node())
	if err != nil {
		return err
	}
	b.bytes = n
	fmt.Printf("tree: %s in %d files, on %s; %d CPUs (%s)\n\n", human(n), files, b.fs, runtime.NumCPU(), cpuFlags())

	caches := []string{"warm"}
	if os.Geteuid() == 0 {
		caches = append(caches, "cold")
	} else {
		fmt.Println("not root: cold-cache figures skipped (dropping the page cache needs root)")
	}
	srcs := b.node() + "/chain_data " + b.node() + "/data"
	var results []measurement
	for _, cache := range caches {
		cases := []struct {
			name  string
			reset func() error
			work  func() error
		}{
			{"backup (cita-node-job: copy+manifest+syncfs)", b.resetDir(b.backup()), func() error {
				_, err := datamove.Backup(context.Background(), b.node(), b.backup())
				return err
			}},
			{"cp -a --reflink=never + sync", b.resetDir(b.backup()), shell("cp -a --reflink=never " + srcs + " " + b.backup() + " && sync")},
			{"cp -a + sync + sha256sum every file", b.resetDir(b.backup()), shell(
				"cp -a --reflink=never " + srcs + " " + b.backup() + " && sync && find " + b.backup() +
					" -type f -print0 | xargs -0 -n 256 -P " + strconv.Itoa(runtime.NumCPU()) + " sha256sum > /dev/null")},
			{"original operator: du -sb + cp -a + sync", b.resetDir(b.backup()), shell("du -sb " + srcs + " > /dev/null && cp -a " + srcs + " " + b.backup() + " && sync")},
		}
		if _, err := exec.LookPath("b3sum"); err == nil {
			cases = append(cases, struct {
				name  string
				reset func() error
				work  func() error
			}{"cp -a + sync + b3sum every file", b.resetDir(b.backup()), shell(
				"cp -a --reflink=never " + srcs + " " + b.backup() + " && sync && find " + b.backup() +
					" -type f -print0 | xargs -0 -n 256 -P " + strconv.Itoa(runtime.NumCPU()) + " b3sum > /dev/null")})
		}
		for _, c := range cases {
			m, err := b.measure(c.name, cache, c.reset, c.work)
			if err != nil {
				return err
			}
			results = append(results, m)
		}
		// Restore from a backup made by cita-node-job (with manifest) into a fresh node root.
		prepareBackup := func() error {
			if _, err := os.Stat(filepath.Join(b.backup(), datamove.ManifestFile)); err == nil {
				return b.resetDir(b.target())()
			}
			if err := b.resetDir(b.backup())(); err != nil {
				return err
			}
			if _, err := datamove.Backup(context.Background(), b.node(), b.backup()); err != nil {
				return err
			}
			return b.resetDir(b.target())()
		}
		for _, c := range []struct {
			name string
			work func() error
		}{
			{"restore (cita-node-job: verify+stage+syncfs+swap)", func() error {
				_, err := datamove.Restore(context.Background(), datamove.RestoreOptions{Source: b.backup(), NodeRoot: b.target()})
				return err
			}},
			{"restore baseline: cp -a + sync", shell("cp -a --reflink=never " + b.backup() + "/chain_data " + b.backup() + "/data " + b.target() + " && sync")},
		} {
			m, err := b.measure(c.name, cache, prepareBackup, c.work)
			if err != nil {
				return err
			}
			results = append(results, m)
		}
	}
	b.report(results, caches)
	return nil
}

// resetDir empties dir (outside the timed part) and settles the disk.
func (b *bench) resetDir(dir string) func() error {
	return func() error {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		return os.MkdirAll(dir, 0o755)
	}
}

func (b *bench) measure(name, cache string, reset, work func() error) (measurement, error) {
	var secs []float64
	for range b.runs {
		if err := reset(); err != nil {
			return measurement{}, err
		}
		syscall.Sync()
		if cache == "cold" {
			if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
				return measurement{}, fmt.Errorf("dropping caches: %w", err)
			}
		} else if err := shell("cat $(find " + b.node() + " " + b.backup() + " -type f) > /dev/null 2>&1 || true")(); err != nil {
			return measurement{}, err
		}
		start := time.Now()
		if err := work(); err != nil {
			return measurement{}, fmt.Errorf("%s: %w", name, err)
		}
		secs = append(secs, time.Since(start).Seconds())
	}
	slices.Sort(secs)
	m := measurement{name: name, cache: cache, seconds: secs[len(secs)/2]}
	fmt.Printf("%-5s %-52s %7.2f s %8.0f MB/s   (runs: %s)\n", cache, name, m.seconds, float64(b.bytes)/m.seconds/1e6, fmtRuns(secs))
	return m, nil
}

func (b *bench) report(results []measurement, caches []string) {
	find := func(cache, prefix string) float64 {
		for _, m := range results {
			if m.cache == cache && strings.HasPrefix(m.name, prefix) {
				return m.seconds
			}
		}
		return 0
	}
	fmt.Printf("\nratios on %s (%s of data):\n", b.fs, human(b.bytes))
	for _, cache := range caches {
		ours, bare, twoPass, orig := find(cache, "backup ("), find(cache, "cp -a --reflink"), find(cache, "cp -a + sync + sha256sum"), find(cache, "original operator")
		restore, restoreBare := find(cache, "restore (cita"), find(cache, "restore baseline")
		check := func(ok bool) string {
			if ok {
				return "meets target"
			}
			return "MISSES target"
		}
		fmt.Printf("%s cache:\n", cache)
		fmt.Printf("  backup throughput / bare copy+sync:       %.2fx  (target >= 0.8x: %s)\n", bare/ours, check(bare/ours >= 0.8))
		fmt.Printf("  backup speed-up vs copy+sync+sha256sum:   %.2fx  (target >= 1.5x: %s)\n", twoPass/ours, check(twoPass/ours >= 1.5))
		fmt.Printf("  backup speed-up vs original du+cp+sync:   %.2fx\n", orig/ours)
		fmt.Printf("  restore time / cp -a+sync:                %.2fx  (target <= 1.3x: %s)\n", restore/restoreBare, check(restore/restoreBare <= 1.3))
	}
}

func shell(script string) func() error {
	return func() error {
		out, err := exec.Command("sh", "-c", script).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", script, err, out)
		}
		return nil
	}
}

// generate writes a tree shaped like a node root: chain_data and data full of 64 MiB
// incompressible SST-like files, thousands of small files (block files, WAL pieces), RocksDB's
// small bookkeeping files, plus kms.db and a consensus WAL that a backup must skip.
func generate(root string, size int64, smallFiles int) error {
	rng := rand.New(rand.NewChaCha8([32]byte{42}))
	buf := make([]byte, 64<<20)
	write := func(rel string, n int) error {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		fillRandom(rng, buf[:n])
		return os.WriteFile(p, buf[:n], 0o644)
	}
	var small int64
	for i := range smallFiles {
		n := 1024 + rng.IntN(23*1024)
		small += int64(n)
		dir := "chain_data/blocks"
		if i%3 == 0 {
			dir = "data/statedb/wal"
		}
		if err := write(fmt.Sprintf("%s/%03d/%06d", dir, i%100, i), n); err != nil {
			return err
		}
	}
	for i := 0; int64(i)*int64(len(buf)) < size-small; i++ {
		dir := "chain_data"
		if i%3 == 2 {
			dir = "data/statedb"
		}
		if err := write(fmt.Sprintf("%s/%06d.sst", dir, i+7), len(buf)); err != nil {
			return err
		}
	}
	for _, rel := range []string{"chain_data/CURRENT", "chain_data/MANIFEST-000005", "chain_data/OPTIONS-000009", "data/statedb/CURRENT", "kms.db", "raft-data-dir/wal"} {
		if err := write(rel, 4096); err != nil {
			return err
		}
	}
	syscall.Sync()
	return nil
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
}

func treeBytes(root string) (int64, int, error) {
	var n int64
	files := 0
	for _, name := range []string{"chain_data", "data"} {
		err := filepath.Walk(filepath.Join(root, name), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				n += fi.Size()
				files++
			}
			return err
		})
		if err != nil {
			return 0, 0, err
		}
	}
	return n, files, nil
}

// filesystemOf names the filesystem and device under dir, as the figures depend on them.
func filesystemOf(dir string) string {
	out, err := exec.Command("findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", dir).Output()
	if err == nil {
		// A filesystem mounted twice is listed twice: the first line is enough.
		line, _, _ := strings.Cut(string(out), "\n")
		if f := strings.Fields(line); len(f) == 2 {
			return f[0] + " on " + f[1]
		}
	}
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return "unknown filesystem"
	}
	return fmt.Sprintf("filesystem type %#x", st.Type)
}

func cpuFlags() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	var have []string
	for _, f := range []string{"sha_ni", "avx2", "avx512f"} {
		if strings.Contains(string(b), " "+f) {
			have = append(have, f)
		}
	}
	return strings.Join(have, ",")
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = v, m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad size %q (want e.g. 2GiB, 512MiB)", s)
	}
	return int64(v * float64(mult)), nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

func fmtRuns(secs []float64) string {
	s := make([]string, len(secs))
	for i, v := range secs {
		s[i] = strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strings.Join(s, " ")
}
