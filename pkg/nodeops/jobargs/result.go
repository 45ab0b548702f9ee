package jobargs

import (
	"encoding/json"
	"fmt"
)

// MaxResultBytes is the kubelet's limit on a termination message.
const MaxResultBytes = 4096

// Generations of cloud-op (DESIGN §4), as reported in Result.CloudOpGeneration.
const (
	CloudOpLegacy  = "legacy"  // cloud-op ≤ v0.2.x: recover, state-backup, state-recover
	CloudOpCurrent = "current" // cloud-op v6.7.x: rollback, backup
)

// Result is what one run of the job binary reports: one line of JSON in the termination
// message, which the controller reads from the pod status and records in the CR's status.
type Result struct {
	Op Op `json:"op"`
	// Error is the one-line failure reason; empty on success.
	Error string `json:"error,omitempty"`
	// Bytes and Files are the size of the data backed up, restored or snapshotted.
	Bytes int64 `json:"bytes,omitempty"`
	Files int64 `json:"files,omitempty"`
	// Checksum identifies the manifest of a backup or snapshot ("sha256:<hex>" of the
	// manifest file), so two backups with equal checksums hold equal data.
	Checksum string `json:"checksum,omitempty"`
	// Seconds is the wall time of the operation.
	Seconds float64 `json:"seconds"`
	// Verified says whether a restore checked every file against a manifest; a backup made
	// by the original project has none and is restored unverified.
	Verified *bool `json:"verified,omitempty"`
	// CloudOpGeneration is CloudOpLegacy or CloudOpCurrent when cloud-op was consulted.
	CloudOpGeneration string `json:"cloudOpGeneration,omitempty"`
	// BlockHeight is the height of a fallback, snapshot or snapshot-restore.
	BlockHeight int64 `json:"blockHeight,omitempty"`
	// HeightBefore is the node's height before a fallback, or when a snapshot was made,
	// where cloud-op said it (the legacy generation's state-backup does not).
	HeightBefore *int64 `json:"heightBefore,omitempty"`
	// RolledBack says whether a fallback's cloud-op really rolled the node back (false: the
	// node was already at the height); unset where cloud-op did not say the node's height.
	RolledBack *bool `json:"rolledBack,omitempty"`
	// Changed is how many entries chown changed.
	Changed int64 `json:"changed,omitempty"`
	// Warning is something the user should know although the operation succeeded.
	Warning string `json:"warning,omitempty"`
}

// Encode returns r as one line of JSON no longer than MaxResultBytes, shortening Error and
// Warning (the only unbounded fields) from the front if needed: the end of a reason (cloud-op's
// last stderr lines) says the most.
func (r Result) Encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// Result holds only strings and numbers; Marshal cannot fail.
		panic(fmt.Sprintf("encoding job result: %v", err))
	}
	for len(b) > MaxResultBytes {
		over := len(b) - MaxResultBytes + 16
		switch {
		case len(r.Warning) > 0:
			r.Warning = shorten(r.Warning, over)
		case len(r.Error) > 0:
			r.Error = shorten(r.Error, over)
		default:
			return b
		}
		b, _ = json.Marshal(r)
	}
	return b
}

// shorten drops at least n bytes (escaping may make a byte cost up to 6 in JSON, so callers
// loop) from the front of s, keeping the tail.
func shorten(s string, n int) string {
	if n >= len(s) {
		return ""
	}
	rs := []rune(s[n:])
	if len(rs) > 1 {
		rs = rs[1:] // s[n:] may start inside a multi-byte rune
	}
	return "…" + string(rs)
}

// DecodeResult parses a termination message written by the job binary.
func DecodeResult(msg []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(msg, &r); err != nil {
		return Result{}, fmt.Errorf("job result is not JSON: %w", err)
	}
	if _, ok := lookupOp(r.Op); !ok {
		return Result{}, fmt.Errorf("job result names unknown operation %q", r.Op)
	}
	return r, nil
}

// HumanBytes is how sizes are shown to people, in the job's messages and in
// a Backup's or Snapshot's Size column: 1.5GiB, 365.0KiB, 512B.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
