package datamove

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/datamove/cloudoptest"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// installFakeCloudOp puts a cloud-op script on PATH that prints gen's --help, records every
// other invocation's argv (one argument per line) in the returned file, then runs body.
func installFakeCloudOp(t *testing.T, gen, body string) (argsLog string) {
	t.Helper()
	dir := t.TempDir()
	argsLog = filepath.Join(dir, "args.log")
	script := fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--help" ]; then
cat <<'HELP'
%sHELP
exit 0
fi
printf '%%s\n' "$@" > %q
%s
`, cloudoptest.Help[gen], argsLog, body)
	if err := os.WriteFile(filepath.Join(dir, "cloud-op"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return argsLog
}

func readArgsLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestDetectCloudOpGeneration(t *testing.T) {
	for _, gen := range []string{jobargs.CloudOpLegacy, jobargs.CloudOpCurrent} {
		installFakeCloudOp(t, gen, "exit 0")
		c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
		if err != nil {
			t.Fatalf("%s: %v", gen, err)
		}
		if c.Generation != gen {
			t.Errorf("help of %s detected as %s", gen, c.Generation)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cloud-op"), []byte("#!/bin/sh\necho 'Commands:'; echo '  frobnicate'\n"), 0o755)
	t.Setenv("PATH", dir)
	if _, err := DetectCloudOp(context.Background(), "cloud-op", nil); err == nil || !strings.Contains(err.Error(), "cannot tell cloud-op's generation") {
		t.Errorf("unknown --help: err = %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := DetectCloudOp(context.Background(), "cloud-op", nil); err == nil || !strings.Contains(err.Error(), "cloud-op not found") {
		t.Errorf("no cloud-op: err = %v", err)
	}
}

// makeCloudOpNode is a small node root with chain state and consensus WAL.
func makeCloudOpNode(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range map[string]string{
		"chain_data/000001.sst": "sst", "chain_data/CURRENT": "MANIFEST-1", "data/000002.sst": "state",
		"kms.db": "keys", "raft-data-dir/wal": "raft", "overlord_wal/wal": "overlord",
	} {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestCloudOpCommandLines runs every cloud-op operation × generation × crypto × consensus ×
// deleteConsensusData against a fake cloud-op and checks the exact argv of DESIGN §4's table.
func TestCloudOpCommandLines(t *testing.T) {
	const h = 1234
	type opCase struct {
		op     jobargs.Op
		run    func(context.Context, *CloudOp, CloudOpParams) (jobargs.Result, error)
		hasDel bool
		want   func(gen, crypto, consensus string, del bool, p CloudOpParams) []string
	}
	legacyTail := func(crypto, consensus string, del bool) []string {
		tail := []string{"--crypto", crypto, "--consensus", consensus}
		if del {
			tail = append(tail, "--is-clear")
		}
		return tail
	}
	ops := []opCase{
		{op: jobargs.OpFallback, run: Fallback, hasDel: true, want: func(gen, crypto, consensus string, del bool, p CloudOpParams) []string {
			if gen == jobargs.CloudOpLegacy {
				return append([]string{"recover", "1234", "--node-root", p.NodeRoot, "--config-path", p.ConfigPath}, legacyTail(crypto, consensus, del)...)
			}
			args := []string{"rollback", "1234", "-n", p.NodeRoot, "-c", p.ConfigPath}
			if del {
				args = append(args, "--clean")
			}
			return args
		}},
		{op: jobargs.OpSnapshot, run: Snapshot, want: func(gen, crypto, consensus string, _ bool, p CloudOpParams) []string {
			if gen == jobargs.CloudOpLegacy {
				return append([]string{"state-backup", "1234", "--node-root", p.NodeRoot, "--config-path", p.ConfigPath, "--backup-path", p.BackupPath}, legacyTail(crypto, consensus, false)...)
			}
			return []string{"backup", "1234", "-n", p.NodeRoot, "-c", p.ConfigPath, "-p", p.BackupPath}
		}},
		{op: jobargs.OpSnapshotRestore, run: SnapshotRestore, hasDel: true, want: func(gen, crypto, consensus string, del bool, p CloudOpParams) []string {
			if gen == jobargs.CloudOpLegacy {
				return append([]string{"state-recover", "1234", "--node-root", p.NodeRoot, "--config-path", p.ConfigPath, "--backup-path", p.BackupPath}, legacyTail(crypto, consensus, del)...)
			}
			return nil // no such command: restored like a backup
		}},
	}
	for _, gen := range []string{jobargs.CloudOpLegacy, jobargs.CloudOpCurrent} {
		for _, oc := range ops {
			for _, crypto := range jobargs.Cryptos {
				for _, consensus := range jobargs.Consensuses {
					for _, del := range []bool{false, true} {
						if del && !oc.hasDel {
							continue
						}
						name := fmt.Sprintf("%s/%s/%s/%s/delete=%v", gen, oc.op, crypto, consensus, del)
						t.Run(name, func(t *testing.T) {
							node := makeCloudOpNode(t)
							snapshots := t.TempDir()
							snap := filepath.Join(snapshots, "1234")
							// A fake snapshot writes P/<h> as each generation does.
							script := fmt.Sprintf("mkdir -p %q/chain_data %q/data && echo block > %q/chain_data/000009.sst && echo state > %q/data/000010.sst", snap, snap, snap, snap)
							if gen == jobargs.CloudOpLegacy {
								script = fmt.Sprintf("mkdir -p %q && echo MANIFEST-000001 > %q/CURRENT && echo state > %q/000010.sst", snap, snap, snap)
							}
							argsLog := installFakeCloudOp(t, gen, script)
							if oc.op == jobargs.OpSnapshotRestore {
								if gen == jobargs.CloudOpLegacy {
									makeLegacySnapshot(t, snapshots, h)
								} else {
									makeSnapshot(t, snap)
								}
							}
							c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
							if err != nil {
								t.Fatal(err)
							}
							p := CloudOpParams{Height: h, NodeRoot: node, ConfigPath: "/cita/config/config.toml", BackupPath: snapshots,
								Crypto: crypto, Consensus: consensus, DeleteConsensusData: del}
							res, err := oc.run(context.Background(), c, p)
							if err != nil {
								t.Fatalf("%s: %v", oc.op, err)
							}
							want := oc.want(gen, crypto, consensus, del, p)
							if got := readArgsLog(t, argsLog); !slices.Equal(got, want) {
								t.Errorf("cloud-op argv:\n got %q\nwant %q", got, want)
							}
							if res.CloudOpGeneration != gen || res.BlockHeight != h {
								t.Errorf("result generation %q height %d, want %q %d", res.CloudOpGeneration, res.BlockHeight, gen, h)
							}
							switch {
							case oc.op == jobargs.OpSnapshot:
								if res.Bytes == 0 || res.Checksum == "" {
									t.Errorf("snapshot result %+v lacks bytes or checksum", res)
								}
								manifestPath := filepath.Join(snap, ManifestFile)
								if gen == jobargs.CloudOpLegacy {
									manifestPath = filepath.Join(snapshots, "1234."+ManifestFile)
								}
								if m, _, err := readManifestFile(manifestPath); err != nil || len(m) != 2 {
									t.Errorf("snapshot manifest %s: %v, %v", manifestPath, m, err)
								}
							case oc.op == jobargs.OpSnapshotRestore && gen == jobargs.CloudOpLegacy:
								if res.Verified == nil || !*res.Verified || res.Files != 3 {
									t.Errorf("legacy snapshot-restore result %+v, want 3 files verified", res)
								}
							case oc.op == jobargs.OpSnapshotRestore && gen == jobargs.CloudOpCurrent:
								if b, err := os.ReadFile(filepath.Join(node, "chain_data/000042.sst")); err != nil || string(b) != "snapshot" {
									t.Errorf("current-generation snapshot-restore did not restore P/<h>: %q, %v", b, err)
								}
								if res.Verified == nil || !*res.Verified {
									t.Errorf("snapshot-restore was not verified")
								}
								for _, name := range consensusData {
									if _, err := os.Lstat(filepath.Join(node, name)); del != os.IsNotExist(err) {
										t.Errorf("%s: deleted=%v, want %v", name, os.IsNotExist(err), del)
									}
								}
							}
							if _, err := os.Lstat(filepath.Join(node, checkpointDir)); !os.IsNotExist(err) {
								t.Errorf("checkpoint left behind after success")
							}
						})
					}
				}
			}
		}
	}
}

// makeLegacySnapshot writes a legacy snapshot P/<h>, one RocksDB, with its manifest beside
// it, as Snapshot leaves it.
func makeLegacySnapshot(t *testing.T, backupPath string, h int64) {
	t.Helper()
	dir := filepath.Join(backupPath, strconv.FormatInt(h, 10))
	for rel, content := range map[string]string{"CURRENT": "MANIFEST-000001\n", "MANIFEST-000001": "manifest", "000043.sst": "state at h"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := writeLegacySnapshotManifest(context.Background(), backupPath, h); err != nil {
		t.Fatal(err)
	}
}

// makeSnapshot writes a snapshot P/<h> with its manifest, as Snapshot leaves it.
func makeSnapshot(t *testing.T, dir string) {
	t.Helper()
	for rel, content := range map[string]string{"chain_data/000042.sst": "snapshot", "data/000043.sst": "state at h"} {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := writeSnapshotManifest(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
}

func TestLegacyCloudOpNeedsCryptoAndConsensus(t *testing.T) {
	argsLog := installFakeCloudOp(t, jobargs.CloudOpLegacy, "exit 0")
	c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Fallback(context.Background(), c, CloudOpParams{Height: 1, NodeRoot: makeCloudOpNode(t), ConfigPath: "/c", Consensus: "raft"})
	if err == nil || !strings.Contains(err.Error(), "needs the node's crypto and consensus") {
		t.Fatalf("err = %v", err)
	}
	if readArgsLog(t, argsLog) != nil {
		t.Errorf("cloud-op ran without crypto")
	}
}

// A cloud-op that damages the data the way a failed in-place run can (rewrites, truncates,
// deletes — an .sst too —, replaces an .sst by a new file, adds files, drops a directory), then
// fails with a reason on stderr.
const damagingCloudOp = `
cd "$NODE_ROOT" || exit 99
echo garbage > chain_data/MANIFEST-000005
: > chain_data/OPTIONS-000007
rm chain_data/000002.sst
echo new > chain_data/000001.sst.tmp && mv chain_data/000001.sst.tmp chain_data/000001.sst
echo fresh > chain_data/000099.sst
rm -rf data/state raft-data-dir
mkdir -p overlord_wal/new && echo x > overlord_wal/new/log
chmod 600 chain_data/CURRENT
touch "$READY"
[ -n "$HANG" ] && sleep 60
echo "opening rocksdb at $NODE_ROOT/chain_data" >&2
echo "Error: rollback height 5 is above the current height 3" >&2
exit 2
`

func TestFailingCloudOpPutsTheCheckpointBack(t *testing.T) {
	for _, gen := range []string{jobargs.CloudOpLegacy, jobargs.CloudOpCurrent} {
		t.Run(gen, func(t *testing.T) {
			node := t.TempDir()
			makeNodeRoot(t, node, nodeRootSpec{smallFiles: 50, seed: 3})
			before := fingerprint(t, node)
			delete(before, ".")
			t.Setenv("NODE_ROOT", node)
			t.Setenv("READY", filepath.Join(t.TempDir(), "ready"))
			installFakeCloudOp(t, gen, damagingCloudOp)
			c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Fallback(context.Background(), c, CloudOpParams{Height: 5, NodeRoot: node, ConfigPath: "/c", Crypto: "sm", Consensus: "raft", DeleteConsensusData: true})
			if err == nil || !strings.Contains(err.Error(), "Error: rollback height 5 is above the current height 3") {
				t.Fatalf("err = %v, want cloud-op's stderr tail as the reason", err)
			}
			if !strings.Contains(err.Error(), "put back") {
				t.Errorf("reason %q does not say the data was put back", err)
			}
			after := fingerprint(t, node)
			delete(after, ".")
			if d := diffFingerprints(before, after); d != "" {
				t.Errorf("node root after a failed cloud-op differs from before:\n%s", d)
			}
			if _, err := os.Lstat(filepath.Join(node, checkpointDir)); !os.IsNotExist(err) {
				t.Errorf("checkpoint left behind")
			}
		})
	}
}

func TestKilledDuringCloudOpTheNextRunPutsTheCheckpointBack(t *testing.T) {
	node := t.TempDir()
	makeNodeRoot(t, node, nodeRootSpec{smallFiles: 50, seed: 4})
	before := fingerprint(t, node)
	delete(before, ".")
	ready := filepath.Join(t.TempDir(), "ready")
	t.Setenv("NODE_ROOT", node)
	t.Setenv("READY", ready)
	t.Setenv("HANG", "1")
	installFakeCloudOp(t, jobargs.CloudOpCurrent, damagingCloudOp)

	child := startHelper(t, "fallback:cloud-op|"+node)
	waitFor(t, "cloud-op to have damaged the data", func() bool { _, err := os.Stat(ready); return err == nil })
	killHelper(t, child)

	// The next run of any operation starts by recovering the node root.
	installFakeCloudOp(t, jobargs.CloudOpCurrent, "exit 0")
	c, err := DetectCloudOp(context.Background(), "cloud-op", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Fallback(context.Background(), c, CloudOpParams{Height: 5, NodeRoot: node, ConfigPath: "/c"})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if !strings.Contains(res.Warning, "checkpoint was put back") {
		t.Errorf("rerun warning %q does not mention the recovered checkpoint", res.Warning)
	}
	after := fingerprint(t, node)
	delete(after, ".")
	if d := diffFingerprints(before, after); d != "" {
		t.Errorf("node root after kill + rerun differs from before:\n%s", d)
	}
}

func TestCheckpointOfSSTsIsHardLinks(t *testing.T) {
	node := t.TempDir()
	const sstSize, ssts = 64 << 20, 16 // 1 GiB of table files
	for i := range ssts {
		dir := "chain_data"
		if i%4 == 0 {
			dir = "data"
		}
		p := filepath.Join(node, dir, fmt.Sprintf("%06d.sst", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		// Allocated, not written: real blocks on disk at no test time.
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, sstSize); err != nil {
			t.Skipf("fallocate: %v", err)
		}
		f.Close()
	}
	os.WriteFile(filepath.Join(node, "chain_data/MANIFEST-000001"), make([]byte, 10_000), 0o644)
	os.WriteFile(filepath.Join(node, "chain_data/000100.log"), make([]byte, 50_000), 0o644)

	start := time.Now()
	if err := takeCheckpoint(context.Background(), node, chainState); err != nil {
		t.Fatal(err)
	}
	// Timing is reported, not asserted: speed belongs to benchmarks.
	t.Logf("checkpoint of 1 GiB of .sst files took %v", time.Since(start))
	// Space the checkpoint holds on its own: blocks of inodes not shared with the live data.
	live := map[int64]bool{}
	for _, ino := range inodesUnder(t, node, chainState...) {
		live[ino.ino] = true
	}
	var ownBlocks, linked int64
	for rel, ino := range inodesUnder(t, filepath.Join(node, checkpointDir, "saved"), chainState...) {
		switch {
		case live[ino.ino]:
			linked++
		case strings.HasSuffix(rel, ".sst"):
			t.Errorf("%s was copied, not hard-linked", rel)
		default:
			ownBlocks += ino.blocks * 512
		}
	}
	if linked != ssts {
		t.Errorf("%d .sst files hard-linked, want %d", linked, ssts)
	}
	if ownBlocks > 1<<20 {
		t.Errorf("checkpoint of 1 GiB of .sst files holds %d bytes of its own, want < 1 MiB", ownBlocks)
	}
	if err := removeCheckpoint(node); err != nil {
		t.Fatal(err)
	}
}

type inodeInfo struct{ ino, blocks int64 }

func inodesUnder(t *testing.T, root string, names ...string) map[string]inodeInfo {
	t.Helper()
	out := map[string]inodeInfo{}
	for _, name := range names {
		filepath.Walk(filepath.Join(root, name), func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				st := fi.Sys().(*syscall.Stat_t)
				rel, _ := filepath.Rel(root, p)
				out[rel] = inodeInfo{int64(st.Ino), st.Blocks}
			}
			return nil
		})
	}
	return out
}
