// Command etcd is the etcd server, built from the version pinned in this tools
// module so that the local control plane does not depend on a downloaded binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
