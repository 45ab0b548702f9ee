// Package e2e runs the operator, as its own process, against the real local
// control plane of test/localcluster, with the operations' Job pods really
// executed by test/jobrunner. It re-proves on a real kube-apiserver what the
// unit tests prove against fakes: the README's samples, every kind on every
// deploy method, failures, restarts and bad input.
package e2e
