// Package citanode is the controller that runs a CitaNode as the StatefulSet
// and Service CITA-Cloud's cloud-config (6.7) generates for a node, so that
// every operation sees a CitaNode as a deployMethod: cloud-config node.
package citanode
