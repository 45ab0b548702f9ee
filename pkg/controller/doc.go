// Package controller holds what every controller of the operator's process
// shares: the informers' cache transform, the named work queues and their
// metrics, the event sink and the loop that runs all controllers under one
// leader election. Each controller is a package of its own below it
// (operations: the stop → Job → start machine of the six operation kinds).
package controller
