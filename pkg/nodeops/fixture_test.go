package nodeops

import (
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

const ns = "chains"

// newListers loads objs into real indexers behind the listers Locate reads,
// the way the operator's informers would. ConfigMaps back ConfigMapExists.
func newListers(t *testing.T, objs ...runtime.Object) Listers {
	t.Helper()
	index := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	sts, deploys, pods, pvcs := index(), index(), index(), index()
	configMaps := map[string]bool{}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *appsv1.StatefulSet:
			err = sts.Add(o)
		case *appsv1.Deployment:
			err = deploys.Add(o)
		case *corev1.Pod:
			err = pods.Add(o)
		case *corev1.PersistentVolumeClaim:
			err = pvcs.Add(o)
		case *corev1.ConfigMap:
			configMaps[o.Namespace+"/"+o.Name] = true
		default:
			t.Fatalf("newListers: unexpected object %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return Listers{
		StatefulSets: appslisters.NewStatefulSetLister(sts),
		Deployments:  appslisters.NewDeploymentLister(deploys),
		Pods:         corelisters.NewPodLister(pods),
		PVCs:         corelisters.NewPersistentVolumeClaimLister(pvcs),
		ConfigMapExists: func(namespace, name string) (bool, error) {
			return configMaps[namespace+"/"+name], nil
		},
	}
}

// The objects of these tests are in ns, at the resourceVersion a cache
// would hold; each deploy method's node has other crypto and consensus
// images (kms or crypto, tags, a registry with a port, a digest), which
// Locate reads.
var (
	inNS    = nodetest.Namespace(ns)
	ccShape = nodetest.Options(inNS, nodetest.ResourceVersion("7"),
		nodetest.Images("citacloud/kms_sm:v6.6.0", "citacloud/consensus_overlord:v6.6.0"))
	helmShape = nodetest.Options(inNS, nodetest.ResourceVersion("3"),
		nodetest.Images("registry.local:5000/citacloud/crypto_eth:v6.7.0", "registry.local:5000/citacloud/consensus_raft@sha256:0123456789abcdef"))
	pyShape = nodetest.Options(inNS, nodetest.ResourceVersion("5"),
		nodetest.Images("citacloud/kms_eth:v6.6.0", "citacloud/consensus_bft:v6.6.0"))
)

// invalidReason is the reason of an *InvalidError, or "" for any other error.
func invalidReason(err error) string {
	var inv *InvalidError
	if errors.As(err, &inv) {
		return inv.Reason
	}
	return ""
}

// errPVCLister fails every read, as a broken cache would.
type errPVCLister struct {
	corelisters.PersistentVolumeClaimLister
}

func (errPVCLister) PersistentVolumeClaims(string) corelisters.PersistentVolumeClaimNamespaceLister {
	return errPVCNamespaceLister{}
}

type errPVCNamespaceLister struct {
	corelisters.PersistentVolumeClaimNamespaceLister
}

func (errPVCNamespaceLister) Get(string) (*corev1.PersistentVolumeClaim, error) {
	return nil, errCache
}

var errCache = errors.New("cache unavailable")

// TestNodetestNames: nodetest spells the deployers' names as literals (it
// cannot import this package); they must be the names Locate looks for.
func TestNodetestNames(t *testing.T) {
	for _, n := range [][2]string{
		{nodetest.DataVolume, DataVolume},
		{nodetest.AccountVolume, AccountVolume},
		{nodetest.PythonChainLabel, PythonChainLabel},
		{nodetest.PythonNodeLabel, PythonNodeLabel},
	} {
		if n[0] != n[1] {
			t.Errorf("nodetest says %q where nodeops says %q", n[0], n[1])
		}
	}
}
