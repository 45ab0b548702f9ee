// Package controller holds what every controller of the operator's process
// shares: the informers and their cache transform, the named work queues
// and their metrics, the event sink, and RunAll, which main calls while it
// holds the leader lease. Each controller is a package of its own below it
// (operations: the stop → Job → start machine of the six operation kinds).
package controller
