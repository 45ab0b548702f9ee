package operations

import (
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	citaclient "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/typed/citacloud/v1"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// BlockHeightFallback: cloud-op rolls the stopped node back to a height, in
// place (the job binary checkpoints the data around it).
func init() {
	register(kindSpec[*citav1.BlockHeightFallback]{
		Name: "BlockHeightFallback", Resource: "blockheightfallbacks", JobSuffix: "fallback",
		Informer: func(i citainformers.Interface) cache.SharedIndexInformer { return i.BlockHeightFallbacks().Informer() },
		Client: func(c citaclient.CitacloudV1Interface, ns string) crClient[*citav1.BlockHeightFallback] {
			return c.BlockHeightFallbacks(ns)
		},
		Operation: func(cr *citav1.BlockHeightFallback) *operation {
			return nodeOperation(cr, &cr.Status.OperationStatus, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions)
		},
		hooks: hooks[*citav1.BlockHeightFallback]{
			DirectNeedsStoppedNode: true,
			WritesNodeRoot:         true,
			Job: func(_ *Controller, cr *citav1.BlockHeightFallback, nodes []*nodeops.Node) (jobWork, error) {
				n := nodes[0]
				return jobWork{Args: jobargs.Args{
					Op:                  jobargs.OpFallback,
					NodeRoot:            jobargs.NodeRootMountPath,
					ConfigPath:          n.ConfigPath(),
					BlockHeight:         cr.Spec.BlockHeight,
					Crypto:              n.Crypto,
					Consensus:           n.Consensus,
					DeleteConsensusData: ptr.Deref(cr.Spec.DeleteConsensusData, false),
				}}, nil
			},
			RecordResult: func(cr *citav1.BlockHeightFallback, r *jobargs.Result) {
				cr.Status.HeightBefore = r.HeightBefore
			},
		},
	})
}
