package nodeops

// locateCloudConfig: cloud-config deploys one StatefulSet per node, named
// after it, whose pod <node>-0 keeps the node root at the root of PVC
// datadir-<node>-0; config.toml comes from the ConfigMap <node>-config and
// the node's account from the ConfigMap of its node-account volume.
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
	n.DataSubPath = m.SubPath
	if ok, err := l.ConfigMapExists(t.Namespace, n.ConfigMap); err != nil {
		return nil, err
	} else if !ok {
		return nil, invalid("the node's config ConfigMap %s/%s does not exist", t.Namespace, n.ConfigMap)
	}
	for _, v := range w.Template.Spec.Volumes {
		if v.Name == AccountVolume && v.ConfigMap != nil {
			n.AccountConfigMap = v.ConfigMap.Name
		}
	}
	return n, nil
}
