package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/test/fixtures"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// node is a fixtures.Node with test-failing accessors.
type node struct {
	*fixtures.Node
	ns, chain, name, workload, claim string
	replicas                         int32
	method                           citav1.DeployMethod
}

func deployer() *fixtures.Deployer {
	return &fixtures.Deployer{Client: env.kube, VolumeDir: localcluster.VolumeDir}
}

func wrap(n *fixtures.Node) *node {
	return &node{Node: n, ns: n.Namespace, chain: n.Chain, name: n.Name, workload: n.Workload, claim: n.Claim, replicas: n.Replicas, method: n.Method}
}

func deployCloudConfig(t *testing.T, ns, chain, name string) *node {
	t.Helper()
	n, err := deployer().CloudConfig(env.ctx, ns, chain, name)
	if err != nil {
		t.Fatal(err)
	}
	return wrap(n)
}

func deployHelm(t *testing.T, ns, chain string, replicas int32) []*node {
	t.Helper()
	ns2, err := deployer().Helm(env.ctx, ns, chain, replicas)
	if err != nil {
		t.Fatal(err)
	}
	var out []*node
	for _, n := range ns2 {
		out = append(out, wrap(n))
	}
	return out
}

func deployPython(t *testing.T, ns, chain, name string) *node {
	t.Helper()
	n, err := deployer().Python(env.ctx, ns, chain, name)
	if err != nil {
		t.Fatal(err)
	}
	return wrap(n)
}

func (n *node) pods(t *testing.T) []corev1.Pod {
	t.Helper()
	p, err := deployer().Pods(env.ctx, n.Node)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (n *node) specReplicas(t *testing.T) int32 {
	t.Helper()
	r, err := deployer().SpecReplicas(env.ctx, n.Node)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (n *node) annotations(t *testing.T) map[string]string {
	t.Helper()
	a, err := deployer().Annotations(env.ctx, n.Node)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (n *node) root(t *testing.T) string {
	t.Helper()
	r, err := deployer().Root(env.ctx, n.Node)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func volumeDir(t *testing.T, ns, pvc string) string {
	t.Helper()
	dir, err := localcluster.VolumeDir(env.ctx, env.kube, ns, pvc)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func ownerOf(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// digest maps each file under dir/sub... to its sha256.
func digest(t *testing.T, dir string, subs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range subs {
		base := filepath.Join(dir, sub)
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			if d.IsDir() {
				out[rel+"/"] = "dir"
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			out[rel] = hex.EncodeToString(sum[:])
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
