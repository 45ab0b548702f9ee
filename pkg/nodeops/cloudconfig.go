package nodeops

// locateCloudConfig: cloud-config deploys one StatefulSet per node, named
// after it, whose pod <node>-0 keeps the node root at the root of PVC
// datadir-<node>-0; config.toml comes from the ConfigMap of its
// node-config volume (cloud-config's <node>-config; a CitaNode's
// configMapRef may name another) and the node's account from the
// ConfigMap of its node-account volume.
func locateCloudConfig(l Listers, t Target) (*Node, error) {
	w, err := statefulSetWorkload(l, t.Namespace, t.Name, "node")
	if err != nil {
		return nil, err
	}
	n := &Node{Target: t, Workload: w, ConfigMap: t.Name + "-config"}
	if n.DataClaim, err = dataVolume(w, 0); err != nil {
		return nil, err
	}
	m, err := dataMount(w)
	if err != nil {
		return nil, err
	}
	if n.DataSubPath, err = subPathOf(w, m, t.Name+"-0"); err != nil {
		return nil, err
	}
	for _, v := range w.Template.Spec.Volumes {
		if v.Name == AccountVolume && v.ConfigMap != nil {
			n.AccountConfigMap = v.ConfigMap.Name
		}
		if v.Name == ConfigVolume && v.ConfigMap != nil {
			n.ConfigMap = v.ConfigMap.Name
		}
	}
	return n, nil
}

// CheckConfig verifies what Locate takes on trust because it is not cached:
// that the node's config ConfigMap exists.
func (n *Node) CheckConfig(l Listers) error {
	if n.ConfigMap == "" {
		return nil
	}
	ok, err := l.ConfigMapExists(n.Namespace, n.ConfigMap)
	if err != nil {
		return err
	}
	if !ok {
		return invalid("the node's config ConfigMap %s/%s does not exist", n.Namespace, n.ConfigMap)
	}
	return nil
}
