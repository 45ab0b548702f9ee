package datamove

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ManifestFile is the checksum manifest, written at the root of a backup (and of a current
// generation's snapshot P/<h>) next to chain_data and data; a legacy snapshot's is beside
// it, P/<h>.checksums.sha256 (legacySnapshotManifest).
//
// It is in sha256sum's format, so anyone can check a backup without this project:
//
//	cd /path/to/backup && sha256sum -c checksums.sha256
//
// Why SHA-256: it is in the standard library, this project's build machine computes it with
// the SHA-NI instructions at ≈1.8 GB/s per core (BLAKE3 with AVX-512, zeebo/blake3, did ≈3.7
// GB/s), and a backup to a disk is bounded by the disk's write speed (≈335 MB/s with fsync on
// the same machine), so hashing, done on the buffer the copy already holds and in several
// files at once, is not the bottleneck: `make bench-data` on ext4 shows the backup faster than
// a bare `cp -a` + sync. Only on memory-speed storage with few cores does the hash show (tmpfs,
// 2 cores: a copy loop does 1.7 GB/s hashing with SHA-256, 2.4 GB/s with BLAKE3, 4 GB/s
// without hashing); there BLAKE3 would win, at the price of a dependency and of the manifest
// being checkable with sha256sum, which every image has.
const ManifestFile = "checksums.sha256"

type digest = [sha256.Size]byte

// manifest maps a path relative to the backup root ("chain_data/000012.sst") to the SHA-256
// of the regular file there. Directories and symlinks are not listed.
type manifest map[string]digest

// encode renders m sorted by path, so equal data gives an equal manifest (and checksum).
func (m manifest) encode() []byte {
	paths := make([]string, 0, len(m))
	for p := range m {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var b bytes.Buffer
	for _, p := range paths {
		d := m[p]
		// GNU coreutils' escaping: a name with a backslash or newline gets a leading
		// backslash on its line and those characters escaped.
		if strings.ContainsAny(p, "\\\n\r") {
			b.WriteByte('\\')
			p = strings.NewReplacer("\\", "\\\\", "\n", "\\n", "\r", "\\r").Replace(p)
		}
		b.WriteString(hex.EncodeToString(d[:]))
		b.WriteString("  ")
		b.WriteString(p)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// checksum identifies a manifest: two backups with the same checksum hold the same files.
func checksumOf(encoded []byte) string {
	sum := sha256.Sum256(encoded)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func parseManifest(data []byte) (manifest, error) {
	m := manifest{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		escaped := strings.HasPrefix(line, "\\")
		if escaped {
			line = line[1:]
		}
		hexSum, p, ok := strings.Cut(line, "  ")
		if !ok {
			hexSum, p, ok = strings.Cut(line, " *") // sha256sum's binary-mode marker
		}
		var d digest
		if !ok || hex.DecodedLen(len(hexSum)) != len(d) {
			return nil, fmt.Errorf("line %d is not \"<sha256>  <path>\"", n)
		}
		if _, err := hex.Decode(d[:], []byte(hexSum)); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if escaped {
			p = unescapeName(p)
		}
		if !filepath.IsLocal(p) {
			return nil, fmt.Errorf("line %d: path %q leaves the backup", n, p)
		}
		m[filepath.Clean(p)] = d
	}
	return m, sc.Err()
}

func unescapeName(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+1 < len(p) {
			i++
			switch p[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte(p[i])
			}
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// readManifest loads dir's manifest and its checksum; a nil manifest when there is none (a
// backup made by the original project).
func readManifest(dir string) (manifest, string, error) {
	return readManifestFile(filepath.Join(dir, ManifestFile))
}

// readManifestFile loads the manifest at path and its checksum; a nil manifest when there is
// none.
func readManifestFile(path string) (manifest, string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	m, err := parseManifest(data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return m, checksumOf(data), nil
}

// writeManifest stores m in dir and returns its checksum. It is written last, durably, so a
// backup interrupted earlier has no manifest and can never pass for complete.
func writeManifest(dir string, m manifest) (string, error) {
	return writeManifestFile(filepath.Join(dir, ManifestFile), m)
}

func writeManifestFile(path string, m manifest) (string, error) {
	enc := m.encode()
	if err := writeFileDurably(path, enc); err != nil {
		return "", fmt.Errorf("writing manifest: %w", err)
	}
	return checksumOf(enc), nil
}
