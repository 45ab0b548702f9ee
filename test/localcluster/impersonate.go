package localcluster

import (
	"k8s.io/client-go/tools/clientcmd"
)

// ImpersonatingKubeconfig writes to out a copy of the admin kubeconfig that
// acts as the ServiceAccount namespace/name (the admin may impersonate), so
// that a process run with it has exactly that ServiceAccount's RBAC.
func ImpersonatingKubeconfig(admin, out, namespace, name string) error {
	cfg, err := clientcmd.LoadFromFile(admin)
	if err != nil {
		return err
	}
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = "system:serviceaccount:" + namespace + ":" + name
		auth.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	return clientcmd.WriteToFile(*cfg, out)
}
