package operations

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	citaclient "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/typed/citacloud/v1"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// Restore: put a Complete Backup or Snapshot of the same chain back into the
// node (chain state only). The job binary verifies and stages the copy and
// replaces the live data only after it succeeded.
func init() {
	register(kindSpec[*citav1.Restore]{
		Name: "Restore", Resource: "restores", JobSuffix: "restore",
		Informer: func(i citainformers.Interface) cache.SharedIndexInformer { return i.Restores().Informer() },
		Reads: []func(citainformers.Interface) cache.SharedIndexInformer{
			func(i citainformers.Interface) cache.SharedIndexInformer { return i.Backups().Informer() },
			func(i citainformers.Interface) cache.SharedIndexInformer { return i.Snapshots().Informer() },
		},
		Client: func(c citaclient.CitacloudV1Interface, ns string) crClient[*citav1.Restore] {
			return c.Restores(ns)
		},
		Operation: func(cr *citav1.Restore) *operation {
			return nodeOperation(cr, &cr.Status.OperationStatus, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions)
		},
		hooks: hooks[*citav1.Restore]{
			DirectNeedsStoppedNode: true,
			WritesNodeRoot:         true,
			Validate:               validateRestore,
			Job:                    restoreJob,
			RecordResult:           func(cr *citav1.Restore, r *jobargs.Result) { cr.Status.Verified = r.Verified },
		},
	})
}

// source is the Backup or Snapshot a Restore reads.
type restoreSource struct {
	kind, name, chain, claim string
	phase                    citav1.Phase
	height                   int64
}

func restoreSourceOf(c *Controller, cr *citav1.Restore) (*restoreSource, error) {
	ns := cr.Namespace
	if name := cr.Spec.Backup; name != "" {
		b, err := c.citaV1().Backups().Lister().Backups(ns).Get(name)
		if apierrors.IsNotFound(err) {
			return nil, &nodeops.InvalidError{Reason: fmt.Sprintf("Backup %s/%s does not exist", ns, name)}
		}
		if err != nil {
			return nil, err
		}
		return &restoreSource{kind: "Backup", name: name, chain: b.Spec.Chain, claim: orDefault(b.Status.PVC, b.Name), phase: b.Status.Status}, nil
	}
	name := cr.Spec.Snapshot
	if name == "" {
		return nil, &nodeops.InvalidError{Reason: "exactly one of spec.backup or spec.snapshot must be set"}
	}
	s, err := c.citaV1().Snapshots().Lister().Snapshots(ns).Get(name)
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

func validateRestore(_ context.Context, c *Controller, _ *operation, cr *citav1.Restore, _ []*nodeops.Node) error {
	src, err := restoreSourceOf(c, cr)
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
	if src.chain != cr.Spec.Chain {
		return &nodeops.InvalidError{Reason: fmt.Sprintf("%s %s is of chain %q, not %q", src.kind, src.name, src.chain, cr.Spec.Chain)}
	}
	if _, err := c.listers.PVCs.PersistentVolumeClaims(cr.Namespace).Get(src.claim); apierrors.IsNotFound(err) {
		return &nodeops.InvalidError{Reason: fmt.Sprintf("the PVC %s of %s %s does not exist", src.claim, src.kind, src.name)}
	} else if err != nil {
		return err
	}
	return nil
}

func restoreJob(c *Controller, cr *citav1.Restore, nodes []*nodeops.Node) (jobWork, error) {
	src, err := restoreSourceOf(c, cr)
	if err != nil {
		return jobWork{}, err
	}
	n := nodes[0]
	del := ptr.Deref(cr.Spec.DeleteConsensusData, false)
	if src.kind == "Backup" {
		return jobWork{Args: jobargs.Args{
			Op: jobargs.OpRestore, NodeRoot: jobargs.NodeRootMountPath,
			SourcePath: jobargs.BackupMountPath, DeleteConsensusData: del,
		}, Claim: src.claim, ReadOnly: true}, nil
	}
	return jobWork{Args: jobargs.Args{
		Op: jobargs.OpSnapshotRestore, NodeRoot: jobargs.NodeRootMountPath,
		ConfigPath: n.ConfigPath(), SourcePath: jobargs.BackupMountPath, BlockHeight: src.height,
		Crypto: n.Crypto, Consensus: n.Consensus, DeleteConsensusData: del,
	}, Claim: src.claim, ReadOnly: true}, nil
}
