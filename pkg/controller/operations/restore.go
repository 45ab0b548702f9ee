package operations

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Restore: put a Complete Backup or Snapshot of the same chain back into the
// node (chain state only). The job binary verifies and stages the copy and
// replaces the live data only after it succeeded.
type restoreWork struct {
	cr *citav1.Restore
}

func restoreOperation(cr *citav1.Restore) *operation {
	return nodeOperation(cr, &cr.Status.OperationStatus, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions, restoreWork{cr: cr})
}

// source is the Backup or Snapshot a Restore reads.
type restoreSource struct {
	kind, name, chain, claim string
	phase                    citav1.Phase
	height                   int64
}

func (w restoreWork) source(c *Controller) (*restoreSource, error) {
	ns := w.cr.Namespace
	if name := w.cr.Spec.Backup; name != "" {
		b, err := c.citaListers.backups.Backups(ns).Get(name)
		if apierrors.IsNotFound(err) {
			return nil, &nodeops.InvalidError{Reason: fmt.Sprintf("Backup %s/%s does not exist", ns, name)}
		}
		if err != nil {
			return nil, err
		}
		return &restoreSource{kind: "Backup", name: name, chain: b.Spec.Chain, claim: orDefault(b.Status.PVC, b.Name), phase: b.Status.Status}, nil
	}
	name := w.cr.Spec.Snapshot
	if name == "" {
		return nil, &nodeops.InvalidError{Reason: "exactly one of spec.backup or spec.snapshot must be set"}
	}
	s, err := c.citaListers.snapshots.Snapshots(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, &nodeops.InvalidError{Reason: fmt.Sprintf("Snapshot %s/%s does not exist", ns, name)}
	}
	if err != nil {
		return nil, err
	}
	height := s.Status.BlockHeight
	if height == 0 {
		height = s.Spec.BlockHeight
	}
	return &restoreSource{kind: "Snapshot", name: name, chain: s.Spec.Chain, claim: orDefault(s.Status.PVC, s.Name), phase: s.Status.Status, height: height}, nil
}

func (w restoreWork) validate(_ context.Context, c *Controller, _ *operation, _ []*nodeops.Node) error {
	src, err := w.source(c)
	if err != nil {
		return err
	}
	if src.phase != citav1.PhaseComplete {
		status := string(src.phase)
		if status == "" {
			status = "not started"
		}
		return &nodeops.InvalidError{Reason: fmt.Sprintf("%s %s is not Complete (it is %s)", src.kind, src.name, status)}
	}
	if src.chain != w.cr.Spec.Chain {
		return &nodeops.InvalidError{Reason: fmt.Sprintf("%s %s is of chain %q, not %q", src.kind, src.name, src.chain, w.cr.Spec.Chain)}
	}
	if _, err := c.listers.PVCs.PersistentVolumeClaims(w.cr.Namespace).Get(src.claim); apierrors.IsNotFound(err) {
		return &nodeops.InvalidError{Reason: fmt.Sprintf("the PVC %s of %s %s does not exist", src.claim, src.kind, src.name)}
	} else if err != nil {
		return err
	}
	return nil
}

func (restoreWork) directNeedsStoppedNode() bool { return true }

func (restoreWork) prepare(context.Context, *Controller, *operation, []*nodeops.Node) (bool, error) {
	return true, nil
}

func (w restoreWork) jobArgs(c *Controller, _ *operation, nodes []*nodeops.Node) (jobargs.Args, string, bool, error) {
	src, err := w.source(c)
	if err != nil {
		return jobargs.Args{}, "", false, err
	}
	n := nodes[0]
	del := ptr.Deref(w.cr.Spec.DeleteConsensusData, false)
	if src.kind == "Backup" {
		return jobargs.Args{
			Op: jobargs.OpRestore, NodeRoot: jobargs.NodeRootMountPath,
			SourcePath: jobargs.BackupMountPath, DeleteConsensusData: del,
		}, src.claim, true, nil
	}
	return jobargs.Args{
		Op: jobargs.OpSnapshotRestore, NodeRoot: jobargs.NodeRootMountPath,
		ConfigPath: n.ConfigPath(), SourcePath: jobargs.BackupMountPath, BlockHeight: src.height,
		Crypto: n.Crypto, Consensus: n.Consensus, DeleteConsensusData: del,
	}, src.claim, true, nil
}

func (w restoreWork) recordResult(_ *operation, r *jobargs.Result) {
	w.cr.Status.Verified = r.Verified
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (restoreWork) writesNodeRoot() {}
