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

// ChangeOwner: chown -R of the node root. Direct runs it on the live node.
func init() {
	register(kindSpec[*citav1.ChangeOwner]{
		Name: "ChangeOwner", Resource: "changeowners", JobSuffix: "chown",
		Informer: func(i citainformers.Interface) cache.SharedIndexInformer { return i.ChangeOwners().Informer() },
		Client: func(c citaclient.CitacloudV1Interface, ns string) crClient[*citav1.ChangeOwner] {
			return c.ChangeOwners(ns)
		},
		Operation: func(cr *citav1.ChangeOwner) *operation {
			return nodeOperation(cr, &cr.Status, cr.Spec.NodeTarget, cr.Spec.NodeJobOptions, cr.Spec.JobOptions)
		},
		hooks: hooks[*citav1.ChangeOwner]{
			Job: func(_ *Controller, cr *citav1.ChangeOwner, _ []*nodeops.Node) (jobWork, error) {
				return jobWork{Args: jobargs.Args{
					Op:       jobargs.OpChown,
					NodeRoot: jobargs.NodeRootMountPath,
					UID:      ptr.Deref(cr.Spec.UID, 1000),
					GID:      ptr.Deref(cr.Spec.GID, 1000),
				}}, nil
			},
		},
	})
}
