package jobargs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestCommandParseRoundTrip(t *testing.T) {
	tests := map[string]Args{
		"backup": {Op: OpBackup, NodeRoot: NodeRootMountPath, BackupPath: BackupMountPath},
		"restore": {Op: OpRestore, NodeRoot: NodeRootMountPath, SourcePath: BackupMountPath,
			DeleteConsensusData: true, TerminationLog: "/tmp/result"},
		"restore keeping consensus data": {Op: OpRestore, NodeRoot: NodeRootMountPath, SourcePath: BackupMountPath},
		"fallback legacy": {Op: OpFallback, NodeRoot: NodeRootMountPath, ConfigPath: ConfigMountPath + "/" + ConfigFileName,
			BlockHeight: 1234567, Crypto: "sm", Consensus: "overlord", DeleteConsensusData: true},
		"fallback height 0 without crypto": {Op: OpFallback, NodeRoot: "/n", ConfigPath: "/n/config.toml"},
		"snapshot": {Op: OpSnapshot, NodeRoot: "/n", ConfigPath: "/n/config.toml", BackupPath: BackupMountPath,
			BlockHeight: 99, Crypto: "eth", Consensus: "raft"},
		"snapshot-restore": {Op: OpSnapshotRestore, NodeRoot: "/n", ConfigPath: "/c/config.toml", SourcePath: "/b",
			BlockHeight: 7, Crypto: "sm", Consensus: "bft", DeleteConsensusData: true},
		"chown":                  {Op: OpChown, NodeRoot: NodeRootMountPath, UID: 1000, GID: 1000},
		"chown to root":          {Op: OpChown, NodeRoot: NodeRootMountPath},
		"recover":                {Op: OpRecover, NodeRoot: NodeRootMountPath},
		"path with spaces and =": {Op: OpBackup, NodeRoot: "/cita/node root", BackupPath: "/a=b"},
	}
	covered := map[Op]bool{}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			if err := want.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			argv := want.Command()
			if argv[0] != BinaryName || argv[1] != string(want.Op) {
				t.Fatalf("Command() = %q, want %s %s first", argv, BinaryName, want.Op)
			}
			got, err := Parse(argv)
			if err != nil {
				t.Fatalf("Parse(%q): %v", argv, err)
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("Parse(Command()) = %+v, want %+v", got, want)
			}
		})
		covered[want.Op] = true
	}
	for _, op := range Ops {
		if !covered[op] {
			t.Errorf("no round-trip case for %s", op)
		}
	}
}

func TestCommandIsStable(t *testing.T) {
	a := Args{Op: OpFallback, NodeRoot: "/cita/node", ConfigPath: "/cita/config/config.toml", BlockHeight: 10,
		Crypto: "sm", Consensus: "raft", DeleteConsensusData: true}
	want := []string{"cita-node-job", "fallback", "--node-root=/cita/node", "--config-path=/cita/config/config.toml",
		"--block-height=10", "--crypto=sm", "--consensus=raft", "--delete-consensus-data"}
	if got := a.Command(); !reflect.DeepEqual(want, got) {
		t.Errorf("Command() = %q, want %q", got, want)
	}
}

func TestParseRejects(t *testing.T) {
	tests := map[string]struct {
		argv    []string
		wantErr string
	}{
		"no op":               {[]string{"cita-node-job"}, "usage"},
		"unknown op":          {[]string{"cita-node-job", "explode"}, `unknown operation "explode"`},
		"flag of another op":  {[]string{"cita-node-job", "backup", "--node-root=/n", "--backup-path=/b", "--uid=1"}, "flag provided but not defined: -uid"},
		"missing flag":        {[]string{"cita-node-job", "backup", "--node-root=/n"}, "missing --backup-path"},
		"relative path":       {[]string{"cita-node-job", "restore", "--node-root=n", "--source-path=/b"}, "--node-root must be an absolute path"},
		"bad crypto":          {[]string{"cita-node-job", "fallback", "--node-root=/n", "--config-path=/c", "--block-height=1", "--crypto=rsa"}, "--crypto must be one of"},
		"bad consensus":       {[]string{"cita-node-job", "snapshot", "--node-root=/n", "--config-path=/c", "--backup-path=/b", "--block-height=1", "--consensus=pow"}, "--consensus must be one of"},
		"negative height":     {[]string{"cita-node-job", "fallback", "--node-root=/n", "--config-path=/c", "--block-height=-1"}, "must not be negative"},
		"uid out of range":    {[]string{"cita-node-job", "chown", "--node-root=/n", "--uid=4294967295", "--gid=0"}, "--uid must be in"},
		"stray argument":      {[]string{"cita-node-job", "chown", "--node-root=/n", "--uid=1", "--gid=1", "extra"}, `unexpected argument "extra"`},
		"height not a number": {[]string{"cita-node-job", "fallback", "--node-root=/n", "--config-path=/c", "--block-height=ten"}, "invalid value"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(tc.argv)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse(%q) error = %v, want it to contain %q", tc.argv, err, tc.wantErr)
			}
		})
	}
}

func TestValidateRefusesFieldsTheOpDoesNotTake(t *testing.T) {
	a := Args{Op: OpBackup, NodeRoot: "/n", BackupPath: "/b", BlockHeight: 5}
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "backup does not take --block-height") {
		t.Fatalf("Validate() = %v, want refusal of --block-height", err)
	}
}

func TestResultEncodeFitsTerminationMessage(t *testing.T) {
	verified := true
	r := Result{Op: OpRestore, Bytes: 1 << 40, Files: 123456, Checksum: "sha256:" + strings.Repeat("ab", 32),
		Seconds: 12.5, Verified: &verified, Warning: strings.Repeat("w", 3000), Error: strings.Repeat("é", 3000) + " the end"}
	b := r.Encode()
	if len(b) > MaxResultBytes {
		t.Fatalf("Encode() is %d bytes, limit %d", len(b), MaxResultBytes)
	}
	if strings.ContainsRune(string(b), '\n') {
		t.Fatalf("Encode() is not one line: %q", b)
	}
	got, err := DecodeResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got.Error, "the end") || got.Bytes != r.Bytes || got.Verified == nil || !*got.Verified {
		t.Errorf("decoded %+v lost the tail of the reason or a figure", got)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["changed"]; ok {
		t.Errorf("zero fields should be omitted: %s", b)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 373776: "365.0KiB", 3 << 30: "3.0GiB", 1536 << 20: "1.5GiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %s, want %s", n, got, want)
		}
	}
}

// TestOpTableNamesOnlyDeclaredFlags: an operation that names a flag flagTable does not
// declare would silently not take it.
func TestOpTableNamesOnlyDeclaredFlags(t *testing.T) {
	declared := map[string]bool{}
	for _, f := range flagTable {
		if declared[f.name] {
			t.Errorf("flag --%s is declared twice", f.name)
		}
		declared[f.name] = true
	}
	seen := map[Op]bool{}
	for _, s := range opTable {
		if seen[s.op] {
			t.Errorf("operation %s is declared twice", s.op)
		}
		seen[s.op] = true
		for _, name := range s.flags {
			if !declared[name] {
				t.Errorf("operation %s takes --%s, which flagTable does not declare", s.op, name)
			}
		}
	}
}
