package nodeops

import (
	"strings"
)

// locateHelm: the helm chart deploys one StatefulSet per chain, named after
// the chain; each of its pods <chain>-<i> is a node. All nodes share the PVC
// of the template's datadir volume and mount it with subPathExpr
// $(POD_NAME), so a node's root is the directory named after its pod.
// Stopping one node stops the whole chain.
func locateHelm(l Listers, t Target) (*Node, error) {
	w, err := statefulSetWorkload(l, t.Namespace, t.Chain, "chain")
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(t.Name, t.Chain+"-") {
		return nil, invalid("node %q is not a pod of the chain's StatefulSet %s (want %s-<ordinal>)", t.Name, t.Chain, t.Chain)
	}
	n := &Node{Target: t, Workload: w, podName: t.Name}
	if n.DataClaim, err = dataVolume(w, 0); err != nil {
		return nil, err
	}
	m, err := dataMount(w)
	if err != nil {
		return nil, err
	}
	switch {
	case m.SubPathExpr != "":
		n.DataSubPath = expandPodName(m.SubPathExpr, t.Name)
	case m.SubPath != "":
		n.DataSubPath = m.SubPath
	default:
		n.DataSubPath = t.Name
	}
	return n, nil
}

// expandPodName resolves the only variable the helm chart's subPathExpr
// uses. Another variable is left as written, and then names no directory the
// Job finds: the operation fails rather than touch the wrong data.
func expandPodName(expr, pod string) string {
	return strings.ReplaceAll(expr, "$(POD_NAME)", pod)
}
