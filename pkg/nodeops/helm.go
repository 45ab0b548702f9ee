package nodeops

import (
	"strconv"
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
	ordinal, ok := strings.CutPrefix(t.Name, t.Chain+"-")
	if n, err := strconv.Atoi(ordinal); !ok || err != nil || n < 0 || strconv.Itoa(n) != ordinal {
		return nil, invalid("node %q is not a pod of the chain's StatefulSet %s (want %s-<ordinal>)", t.Name, t.Chain, t.Chain)
	}
	i, _ := strconv.Atoi(ordinal)
	n := &Node{Target: t, Workload: w, podName: t.Name}
	// A claim template gives each pod its own PVC; the chart's shared
	// volume is the same claim for every ordinal.
	if n.DataClaim, err = dataVolume(w, i); err != nil {
		return nil, err
	}
	m, err := dataMount(w)
	if err != nil {
		return nil, err
	}
	if n.DataSubPath, err = subPathOf(w, m, t.Name); err != nil {
		return nil, err
	}
	if n.DataSubPath == "" && len(w.ClaimTemplates) == 0 {
		// The chart's shared claim keeps each node in a directory of its name.
		n.DataSubPath = t.Name
	}
	return n, nil
}
