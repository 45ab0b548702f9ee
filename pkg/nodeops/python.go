package nodeops

import (
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Labels the python deployer puts on a node's Deployment and its pods.
const (
	PythonChainLabel = "chain_name"
	PythonNodeLabel  = "node_name"
)

// locatePython: the python deployer creates one Deployment per node, named
// after it and labelled chain_name/node_name; the node root is the datadir
// volume's claim at the subPath its containers mount (in practice the
// node's name).
func locatePython(l Listers, t Target) (*Node, error) {
	d, err := l.Deployments.Deployments(t.Namespace).Get(t.Name)
	if apierrors.IsNotFound(err) {
		if _, serr := l.StatefulSets.StatefulSets(t.Namespace).Get(t.Name); serr == nil {
			return nil, invalid("node %s/%s is a StatefulSet, not a Deployment: check deployMethod", t.Namespace, t.Name)
		}
		return nil, invalid("node Deployment %s/%s does not exist", t.Namespace, t.Name)
	}
	if err != nil {
		return nil, err
	}
	if chain := d.Labels[PythonChainLabel]; chain != "" && chain != t.Chain {
		return nil, invalid("Deployment %s/%s belongs to chain %q, not %q", t.Namespace, t.Name, chain, t.Chain)
	}
	w := DeploymentWorkload(d)
	if w.Selector == nil {
		return nil, invalid("Deployment %s/%s has an invalid selector", t.Namespace, t.Name)
	}
	n := &Node{Target: t, Workload: w}
	if n.DataClaim, err = dataVolume(w, 0); err != nil {
		return nil, err
	}
	m, err := dataMount(w)
	if err != nil {
		return nil, err
	}
	if n.DataSubPath, err = subPathOf(w, m, ""); err != nil {
		return nil, err
	}
	return n, nil
}
