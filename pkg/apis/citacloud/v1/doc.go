// Package v1 is the citacloud.rivtower.com/v1 API: one custom resource per
// maintenance operation on a CITA-Cloud node. Field names and defaults are
// those of the original cita-node-operator, so existing manifests apply
// unchanged.
//
// +k8s:deepcopy-gen=package
// +groupName=citacloud.rivtower.com
package v1
