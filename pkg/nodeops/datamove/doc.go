// Package datamove is the data work of the operation Job (DESIGN §4): backup with a checksum
// manifest, verified staged restore, checkpoints around cloud-op's in-place rewrites, the two
// cloud-op generations, and chown. It runs inside the Job's pod on the mounted volumes and
// knows nothing of Kubernetes.
//
// Every operation that changes a node root is built so that a failure, or a SIGKILL at any
// instant, leaves the node's previous data usable: new data is written beside the live data
// and renamed into place only once complete, and the next run first finishes or undoes
// whatever a killed run left behind (RecoverNodeRoot).
package datamove

import "errors"

// The chain state of a node root: what Backup, Restore and checkpoints move. Everything else
// in the node root (keys, kms.db, logs, consensus WAL) makes the node this node and stays.
const (
	ChainDataDir = "chain_data" // storage: blocks, transactions; required
	DataDir      = "data"       // executor state
)

// errNoChainData: a node root (or backup) without chain_data holds no chain to work on.
var errNoChainData = errors.New("no " + ChainDataDir)

// chainState lists the node root's chain-state directories in the order they are moved.
var chainState = []string{ChainDataDir, DataDir}

// consensusData is the consensus WAL that deleteConsensusData removes (raft, overlord).
var consensusData = []string{"raft-data-dir", "overlord_wal"}

// Working directories this package creates inside a node root. They start with a dot so no
// CITA-Cloud service mistakes them for its own, and they sit on the node's volume so that
// putting data in place is a rename, never a copy.
const (
	restoreStagingDir = ".cita-node-job-restore"
	checkpointDir     = ".cita-node-job-checkpoint"
)

// testPoint is called at the instants tests need to kill a run at (a file copied, one
// directory swapped); it does nothing outside tests.
var testPoint = func(point string) {}
